"""The web blueprint on a bare Flask app: pages render, carry the security headers, hold
no inline script or style, and every file they reference is served."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from flask import Flask

from api.web import bp
from api.web.headers import SECURITY_HEADERS
from bloodcount.vision.draw import CLASS_COLOURS, REVIEW_COLOUR

PAGES = ["/signin", "/submit", "/batches", "/batches/b-123", "/slides/s-456"]


@pytest.fixture()
def client():
    app = Flask(__name__)
    app.register_blueprint(bp)
    return app.test_client()


class _Page(HTMLParser):
    """Collects what the checks below look at: scripts, styles, attributes, references."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self.script_bodies: list[str] = []
        self.style_tags = 0
        self.attrs: list[tuple[str, str, str | None]] = []
        self.references: list[str] = []
        self.body: dict[str, str | None] = {}
        self.ids: list[str] = []
        self.labels_for: list[str] = []
        self.inputs: list[dict] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.attrs.extend((tag, name, value) for name, value in attrs)
        if "id" in attributes:
            self.ids.append(attributes["id"])
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "style":
            self.style_tags += 1
        if tag == "body":
            self.body = attributes
        if tag == "label" and attributes.get("for"):
            self.labels_for.append(attributes["for"])
        if tag in {"input", "select", "textarea"}:
            self.inputs.append(attributes)
        for name in ("src", "href"):
            if attributes.get(name):
                self.references.append(attributes[name])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.script_bodies.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_with_security_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "img-src 'self' blob:" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", PAGES)
def test_page_has_no_inline_script_or_style(client, path):
    page = _parse(client.get(path).get_data(as_text=True))
    assert page.scripts, "every page loads its module"
    for script in page.scripts:
        assert script.get("type") == "module" and script.get("src", "").startswith(
            "/web/static/js/"
        )
    assert page.script_bodies == []
    assert page.style_tags == 0
    handlers = [(tag, name) for tag, name, _ in page.attrs if name.startswith("on")]
    assert handlers == []
    assert [tag for tag, name, _ in page.attrs if name == "style"] == []
    assert not [v for _, _, v in page.attrs if v and v.strip().lower().startswith("javascript:")]


@pytest.mark.parametrize("path", PAGES)
def test_every_reference_is_served_from_this_app(client, path):
    page = _parse(client.get(path).get_data(as_text=True))
    for ref in page.references:
        if ref.startswith("#"):
            continue
        assert ref.startswith("/") and not ref.startswith("//"), f"{ref} is not on this site"
        if ref.startswith(("/web/", "/signin", "/submit", "/batches", "/slides")):
            assert client.get(ref).status_code == 200, ref


@pytest.mark.parametrize("path", PAGES)
def test_form_controls_have_labels(client, path):
    page = _parse(client.get(path).get_data(as_text=True))
    assert len(page.ids) == len(set(page.ids)), "ids are unique"
    for control in page.inputs:
        labelled = (
            control.get("id") in page.labels_for
            or control.get("aria-labelledby")
            or control.get("aria-label")
            or control.get("type") == "checkbox"  # wrapped in its <label> on the slide page
        )
        assert labelled, control


def test_pages_carry_api_base_and_class_colours_in_order(client):
    page = _parse(client.get("/slides/s-1").get_data(as_text=True))
    assert page.body["data-api-base"] == "/api/v1"
    assert page.body["data-slide-id"] == "s-1"
    assert page.body["data-batch-url"] == "/batches/__id__"
    colours = json.loads(page.body["data-class-colours"])
    assert list(colours.items()) == list(CLASS_COLOURS.items())
    assert page.body["data-review-colour"] == REVIEW_COLOUR


def test_class_colours_css_matches_the_overlay_colours(client):
    response = client.get("/web/class-colours.css")
    assert response.mimetype == "text/css"
    css = response.get_data(as_text=True)
    for name, colour in CLASS_COLOURS.items():
        assert f".class-{name} {{ --class-colour: {colour}; }}" in css
    assert REVIEW_COLOUR in css


def test_ids_are_escaped_into_the_page(client):
    html = client.get('/batches/"><img src=x onerror=alert(1)>').get_data(as_text=True)
    assert "<img src=x" not in html
    assert 'data-batch-id="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in html


def test_signin_post_without_script_neither_echoes_nor_keeps_the_key(client):
    response = client.post("/signin", data={"api_key": "bc_secret-value-123"})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "bc_secret-value-123" not in body
    assert "needs JavaScript" in body
    assert "Set-Cookie" not in response.headers


def test_home_goes_to_the_batches(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/batches")


def test_static_files_carry_the_headers_too(client):
    response = client.get("/web/static/js/api.js")
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "javascript" in response.mimetype


def test_registering_the_pages_does_not_load_opencv():
    # The API process should not pay for OpenCV just because it serves the pages.
    import subprocess
    import sys

    code = "import sys, api.web; sys.exit('cv2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
