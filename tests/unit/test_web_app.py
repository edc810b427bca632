"""The web pages inside the real app: create_app registers them beside the API, and they
show the limits of the app's own settings."""

from __future__ import annotations

import pytest

from tests.servicekit import embedded_settings


@pytest.fixture()
def client(tmp_path):
    from api import create_app

    settings = embedded_settings(tmp_path, max_files_per_batch=7, max_upload_bytes=3 * 1024 * 1024)
    return create_app({"SETTINGS": settings, "TESTING": True}).test_client()


def test_create_app_serves_the_pages_with_their_headers(client):
    response = client.get("/submit")
    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    assert "Up to 7 slides and 3 MB per batch." in html
    assert 'data-max-files="7"' in html and f'data-max-bytes="{3 * 1024 * 1024}"' in html


def test_pages_and_api_do_not_collide(client):
    assert client.get("/batches").mimetype == "text/html"
    api = client.get("/api/v1/batches")
    assert api.status_code == 401
    assert api.mimetype == "application/problem+json"


def test_every_static_file_is_served(client):
    from api.web import HERE

    for path in (HERE / "static").rglob("*"):
        if path.is_file():
            url = "/web/static/" + path.relative_to(HERE / "static").as_posix()
            response = client.get(url)
            assert response.status_code == 200, url
            response.close()
