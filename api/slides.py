"""/api/v1/slides/<id>: one slide's result, its original image and its overlay."""

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
        raise services.NotFound(
            f"the {which} of slide {slide_id!r} is missing from the store"
        ) from None
    response = Response(data, mimetype=content_type)
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


@bp.get("/slides/<slide_id>/image")
def get_image(slide_id: str):
    return _object(slide_id, "image")


@bp.get("/slides/<slide_id>/overlay.jpg")
def get_overlay(slide_id: str):
    return _object(slide_id, "overlay")
