"""Every error as RFC 9457 problem details (application/problem+json), never HTML.

Covers the service's own errors, werkzeug's (404, 405, 413 ...), an unreachable database
or store (503) and anything unexpected (500, logged with its traceback, not shown).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, json, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from bloodcount.services.errors import ServiceError
from bloodcount.storage import StorageError

log = logging.getLogger(__name__)
PROBLEM_TYPE = "application/problem+json"
PROBLEM_BASE = "/api/v1/docs#problem-"


def problem(status: int, detail: str, title: str | None = None, **extra: Any) -> Response:
    """A problem-details response; ``type`` points at the docs page's entry for the status."""
    phrase = HTTPStatus(status).phrase
    body = {
        "type": PROBLEM_BASE + str(status),
        "title": title or phrase,
        "status": status,
        "detail": detail,
        "instance": request.path if request else None,
        **extra,
    }
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)
    return response


def _service_error(exc: ServiceError) -> Response:
    return problem(exc.status, exc.detail, exc.title, **exc.extra)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    detail = exc.description or HTTPStatus(status).description
    if status == 404:
        detail = f"nothing at {request.path}; the API is under /api/v1 (see /api/v1/docs)"
    elif status == 405:
        allowed = ", ".join(sorted(exc.valid_methods or []))  # type: ignore[attr-defined]
        detail = f"{request.method} is not allowed on {request.path}; use {allowed}"
    elif isinstance(exc, RequestEntityTooLarge) and (request.content_length or 0) <= (
        request.max_content_length or 0
    ):
        # The body is within the limit, so one of werkzeug's form limits was hit: a text
        # field over its size, or more parts than it parses (werkzeug says not which).
        detail = (
            f"a form field is over {request.max_form_memory_size or 0:,} bytes, or the form "
            f"has more than {request.max_form_parts or 0:,} parts; 'reference' takes at most "
            "200 characters, images go in 'files' parts with a file name, and a batch holds "
            "at most BLOODCOUNT_MAX_FILES_PER_BATCH of them"
        )
    elif isinstance(exc, RequestEntityTooLarge):
        limit = request.max_content_length or 0
        detail = (
            f"the request body is over {limit:,} bytes (BLOODCOUNT_MAX_UPLOAD_BYTES); split the "
            "batch, or ask for presigned upload URLs with a JSON POST /api/v1/batches"
        )
    response = problem(status, detail)
    for name, value in exc.get_headers():
        if name in ("Allow", "WWW-Authenticate", "Retry-After"):
            response.headers[name] = value
    return response


def _database_down(exc: Exception) -> Response:
    log.error("database error: %s", exc)
    response = problem(
        503,
        "the results database cannot be reached right now; try again in a few seconds",
        "Database unavailable",
    )
    response.headers["Retry-After"] = "5"
    return response


def _storage_down(exc: StorageError) -> Response:
    log.error("storage error: %s", exc)
    response = problem(
        503,
        f"the object store cannot be reached right now ({exc}); try again shortly",
        "Object store unavailable",
    )
    response.headers["Retry-After"] = "5"
    return response


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem(
        500,
        "the server failed on this request; it has been logged. Try again, and report "
        "the time and path if it keeps failing",
    )


def init_app(app: Flask) -> None:
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(InterfaceError, _database_down)
    app.register_error_handler(StorageError, _storage_down)
    app.register_error_handler(Exception, _unexpected)
