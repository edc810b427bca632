"""JSON the API's way: ISO 8601 datetimes, ETags that make polling cheap."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from flask import Response, json, request
from flask.json.provider import DefaultJSONProvider


class ApiJSONProvider(DefaultJSONProvider):
    """Datetimes as ISO 8601 UTC (``2026-01-02T03:04:05.123456Z``), not RFC 822 dates."""

    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, datetime):
            return o.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return DefaultJSONProvider.default(o)


def json_with_etag(payload: Any, status: int = 200, max_age: int | None = None) -> Response:
    """JSON response with a strong ETag over its body; 304 when the client has it already."""
    body = json.dumps(payload)
    tag = hashlib.blake2b(body.encode(), digest_size=12).hexdigest()
    if request.if_none_match.contains(tag):
        response = Response(status=304)
    else:
        response = Response(body, status=status, mimetype="application/json")
    response.set_etag(tag)
    # Cached copies must be revalidated: a batch changes while it runs.
    response.headers["Cache-Control"] = "private, no-cache"
    if max_age is not None:
        response.headers["Cache-Control"] = f"private, max-age={max_age}"
    return response
