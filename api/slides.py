"""/api/v1/slides/<id>: one slide's result, its original image, its overlay and the image
the web page shows."""

from __future__ import annotations

from flask import Response, redirect, url_for

from api.auth import protected
from api.context import lab_id, resources
from api.responses import json_with_etag
from bloodcount import services
from bloodcount.storage import PresignNotSupported

bp = protected("slides")


@bp.get("/slides/<slide_id>")
def get_slide(slide_id: str):
    detail = services.slide_detail(resources(), lab_id(), slide_id)
    detail["links"] = {
        "self": url_for("slides.get_slide", slide_id=slide_id),
        "batch": url_for("batches.get_batch", batch_id=detail["batch_id"]),
        "image": url_for("slides.get_image", slide_id=slide_id),
        "display": url_for("slides.get_display", slide_id=slide_id)
        if detail["has_display"]
        else None,
        "overlay": url_for("slides.get_overlay", slide_id=slide_id)
        if detail["has_overlay"]
        else None,
    }
    detail["overlay_url"] = detail["links"]["overlay"]
    return json_with_etag(detail)


def _object(slide_id: str, which: str) -> Response:
    key, content_type = services.slide_object(resources(), lab_id(), slide_id, which)
    store = resources().store
    try:
        # S3: let the client fetch from the store directly, sparing this process the bytes.
        url = store.presigned_get_url(key, resources().settings.presign_expiry_seconds)
        return redirect(url, 302)
    except PresignNotSupported:
        pass
    try:
        data = store.get(key)
    except KeyError:
        hint = (
            "; reprocess its batch to make it (slides analysed before display images were kept)"
            if which == "display"
            else ""
        )
        raise services.NotFound(
            f"the {which} image of slide {slide_id!r} is missing from the store{hint}"
        ) from None
    response = Response(data, mimetype=content_type)
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


@bp.get("/slides/<slide_id>/image")
def get_image(slide_id: str):
    return _object(slide_id, "image")


@bp.get("/slides/<slide_id>/display")
def get_display(slide_id: str):
    """The image the web page shows: the original, or a JPEG of it where browsers cannot."""
    return _object(slide_id, "display")


@bp.get("/slides/<slide_id>/overlay.jpg")
def get_overlay(slide_id: str):
    return _object(slide_id, "overlay")
