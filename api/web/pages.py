"""Routes of the web pages. Each renders a shell; the page's ES module fetches the data."""

from __future__ import annotations

import json
from functools import cache

from flask import Response, current_app, redirect, render_template, request, url_for

from api.web import bp
from api.web.headers import add_security_headers
from bloodcount.config import Settings
from bloodcount.db.models import BATCH_STATUSES

API_PREFIX = "/api/v1"

bp.after_request(add_security_headers)


@cache
def _colours() -> tuple[dict[str, str], str]:
    """(CLASS_COLOURS, REVIEW_COLOUR), defined once in bloodcount.vision (no OpenCV there)."""
    from bloodcount.vision import CLASS_COLOURS, REVIEW_COLOUR

    return dict(CLASS_COLOURS), REVIEW_COLOUR


def _settings() -> Settings:
    """The app's settings if create_app stored them, else the embedded defaults."""
    for key in ("SETTINGS", "BLOODCOUNT_SETTINGS"):
        value = current_app.config.get(key)
        if isinstance(value, Settings):
            return value
    return Settings()


@bp.context_processor
def _page_context() -> dict:
    settings = _settings()
    class_colours, review_colour = _colours()
    return {
        # script_root keeps the API reachable when the app is mounted under a path.
        "api_base": request.script_root + API_PREFIX,
        "class_colours": class_colours,
        # json.dumps keeps RBC, WBC, Platelets in order (Flask's tojson sorts keys).
        "class_colours_json": json.dumps(class_colours),
        "review_colour": review_colour,
        "batch_statuses": BATCH_STATUSES,
        "max_files": settings.max_files_per_batch,
        "max_upload_bytes": settings.max_upload_bytes,
        "max_upload_mb": settings.max_upload_bytes // (1024 * 1024),
    }


@bp.get("/")
def home():
    return redirect(url_for("web.batches"))


@bp.get("/signin")
def signin():
    return render_template("web/signin.html", page="signin")


@bp.post("/signin")
def signin_without_script():
    # Reached only when the page's module did not run. The key in the body is neither
    # checked nor stored nor logged: the browser keeps it, not a server session.
    return render_template("web/signin.html", page="signin", needs_script=True), 400


@bp.get("/submit")
def submit():
    return render_template("web/submit.html", page="submit")


@bp.get("/batches")
def batches():
    return render_template("web/batches.html", page="batches")


@bp.get("/batches/<batch_id>")
def batch(batch_id: str):
    return render_template("web/batch.html", page="batch", batch_id=batch_id)


@bp.get("/slides/<slide_id>")
def slide(slide_id: str):
    return render_template("web/slide.html", page="slide", slide_id=slide_id)


@bp.get("/web/class-colours.css")
def class_colours_css():
    """CSS custom properties from CLASS_COLOURS, so pages and overlays share one palette."""
    class_colours, review_colour = _colours()
    rules = []
    from bloodcount.vision import CLASS_LINES

    for name, colour in class_colours.items():
        # Each class's own line (bloodcount.vision.CLASS_LINES) on the slide's boxes and the
        # legend's swatches; the boxes' stroke is 2 px wide, so the dash doubles.
        border, dash = CLASS_LINES[name]
        dasharray = " ".join(f"{2 * v:g}" for v in dash) if dash else "none"
        rules.append(f".class-{name} {{ --class-colour: {colour}; }}")
        rules.append(f".class-{name} {{ --class-dash: {dasharray}; --class-line: {border}; }}")
        # The slide page hides a class by putting hide-<class> on the figure.
        rules.append(f".hide-{name} .cell.class-{name} {{ display: none; }}")
    rules.append(f":root {{ --review-colour: {review_colour}; }}")
    response = Response("\n".join(rules) + "\n", mimetype="text/css")
    response.cache_control.max_age = 3600
    return response
