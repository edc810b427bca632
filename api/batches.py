"""/api/v1/batches: submit, poll, list, retry, reprocess."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request, url_for
from werkzeug.exceptions import BadRequest

from api.auth import protected
from api.context import enqueue, lab_id, resources, service
from api.params import choice_param, date_range, page_request
from api.responses import json_with_etag
from bloodcount import services
from bloodcount.db.models import BATCH_STATUSES, SLIDE_STATUSES
from bloodcount.services.uploads import check_characters

bp = protected("batches")
# Seconds a client should wait before polling a running batch again.
POLL_AFTER = 2
RUNNING = ("queued", "processing", "uploading")


def batch_links(batch_id: str) -> dict[str, str]:
    return {
        "self": url_for("batches.get_batch", batch_id=batch_id),
        "slides": url_for("batches.get_slides", batch_id=batch_id),
        "report_csv": url_for("reports.batch_csv", batch_id=batch_id),
        "report_json": url_for("reports.batch_json", batch_id=batch_id),
    }


def _accepted(submission: services.Submission, status: int = 202) -> Response:
    body: dict[str, Any] = {
        "id": submission.batch_id,
        "slide_ids": submission.slide_ids,
        "links": batch_links(submission.batch_id),
    }
    if submission.uploads:
        body["uploads"] = submission.uploads
        body["expires_at"] = submission.expires_at
        body["links"]["submit"] = url_for("batches.submit_uploads", batch_id=submission.batch_id)
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = body["links"]["self"]
    if not submission.created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.post("/batches")
def create_batch():
    """Multipart: images and zips, processed now. JSON: presigned upload URLs, submit later."""
    key = request.headers.get("Idempotency-Key") or None
    if request.mimetype == "multipart/form-data":
        reference = _reference(request.form.get("reference") or None)
        uploads = [
            (f.filename or f"file-{i + 1}", f.stream)
            for i, f in enumerate(request.files.getlist("files") + request.files.getlist("file"))
        ]
        if not uploads:
            # The parser drops a body it cannot read without a word: a part header that is
            # not UTF-8 (a Latin-1 filename="\xe9.jpg") loses every file of the request.
            raise services.InvalidRequest(
                "no slides: the request holds no file part named 'files'; send each image as "
                "a part with a filename, check the multipart boundary, and that the part "
                "headers (file names included) are UTF-8"
            )
        settings = resources().settings
        files = services.expand_uploads(
            uploads,
            settings.max_files_per_batch,
            settings.max_upload_bytes,
            settings.max_image_pixels,
        )
        submission = services.submit_batch(
            resources(),
            lab_id(),
            files,
            enqueue,
            reference=reference,
            idempotency_key=key,
        )
        return _accepted(submission)
    if request.mimetype == "application/json":
        body = _json_body()
        if not isinstance(body, dict):
            raise services.InvalidRequest(
                'the JSON body must be an object: {"files": [{"name": ...}], "reference": ...}'
            )
        submission = services.create_upload_batch(
            resources(),
            lab_id(),
            body.get("files"),
            reference=_reference(body.get("reference")),
            idempotency_key=key,
        )
        return _accepted(submission, 201)
    raise services.InvalidRequest(
        "send the slides as multipart/form-data (field 'files'), or a JSON list of file names "
        "to get presigned upload URLs",
        content_type=request.mimetype or None,
    )


def _json_body() -> Any:
    """The parsed JSON body; a 422 naming the fault if it is not JSON.

    A body nested deeper than the parser's recursion limit ('[' * 100000, 100 kB) raised
    RecursionError, which get_json(silent=True) does not catch: a 500.
    """
    try:
        return request.get_json()
    except BadRequest:
        raise services.InvalidRequest(
            "the body is not valid JSON (it must be UTF-8 encoded); send "
            '{"files": [{"name": ...}], "reference": ...}'
        ) from None
    except RecursionError:
        raise services.InvalidRequest("the JSON body is nested too deeply") from None


def _reference(value: Any) -> str | None:
    """The batch's reference: text, as the JSON body may hold anything.

    A number, list, object, true or NaN reached the service's length check and failed
    there as a 500. A control character, bidi override or lone surrogate is refused as in
    file names (the reference goes into reports and CSV files as they do); a NUL or a
    lone surrogate in JSON also reached the INSERT, which PostgreSQL (NUL) or any UTF-8
    database (surrogate) refuses: a 500. Length and blankness stay the service's checks.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise services.InvalidRequest(
            f"reference must be a string, not {type(value).__name__}", parameter="reference"
        )
    return check_characters(value, "reference", parameter="reference")


@bp.post("/batches/<batch_id>/submit")
def submit_uploads(batch_id: str):
    """Queue a presigned-upload batch once its files are uploaded."""
    return _accepted(services.submit_uploaded(resources(), lab_id(), batch_id, enqueue))


@bp.get("/batches/<batch_id>")
def get_batch(batch_id: str):
    cache, key = service().status_cache, (lab_id(), batch_id)
    summary = cache.get(key)
    if summary is None:
        summary = services.batch_summary(resources(), lab_id(), batch_id)
        if summary["status"] in RUNNING:
            cache.put(key, summary)
    summary["links"] = batch_links(batch_id)
    response = json_with_etag(summary)
    if summary["status"] in RUNNING:
        response.headers["Retry-After"] = str(POLL_AFTER)
    return response


@bp.get("/batches")
def get_batches():
    created_from, created_to = date_range()
    page = services.list_batches(
        resources(),
        lab_id(),
        page_request(),
        status=choice_param("status", BATCH_STATUSES),
        reference=request.args.get("reference") or None,
        created_from=created_from,
        created_to=created_to,
    )
    return page_response(page, "batches.get_batches")


@bp.get("/batches/<batch_id>/slides")
def get_slides(batch_id: str):
    status = choice_param("status", SLIDE_STATUSES)
    page = services.list_slides(resources(), lab_id(), batch_id, page_request(), status)
    for item in page.items:
        item["links"] = {"self": url_for("slides.get_slide", slide_id=item["id"])}
    return page_response(page, "batches.get_slides", batch_id=batch_id)


def page_response(page: services.Page, endpoint: str, **values: Any) -> Response:
    # The client's query goes into the next link as a query string, never as url_for's
    # keyword arguments: there '_method', '_scheme', 'endpoint' or a 'batch_id' in the
    # query failed to build (a 500) and '_external' or '_anchor' changed the link.
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
    query = urlencode([*args, ("page", page.page + 1)])
    body = {
        "items": page.items,
        "page": page.page,
        "per_page": page.per_page,
        "total": page.total,
        "next": f"{url_for(endpoint, **values)}?{query}" if page.has_next else None,
    }
    return json_with_etag(body)


@bp.delete("/batches/<batch_id>")
def delete_batch(batch_id: str):
    """Delete the batch, its slides and results, and its images in the store."""
    outcome = services.delete_batch(resources(), lab_id(), batch_id)
    service().status_cache.forget((lab_id(), batch_id))
    return jsonify(outcome)


@bp.post("/batches/<batch_id>/retry")
def retry(batch_id: str):
    ids = services.retry_failed(resources(), lab_id(), batch_id, enqueue)
    return _requeued(batch_id, ids)


@bp.post("/batches/<batch_id>/reprocess")
def reprocess(batch_id: str):
    ids = services.reprocess(resources(), lab_id(), batch_id, enqueue)
    return _requeued(batch_id, ids)


def _requeued(batch_id: str, ids: list[str]) -> Response:
    service().status_cache.forget((lab_id(), batch_id))
    response = jsonify({"id": batch_id, "slide_ids": ids, "links": batch_links(batch_id)})
    response.status_code = 202
    response.headers["Location"] = url_for("batches.get_batch", batch_id=batch_id)
    return response
