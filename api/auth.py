"""Per-lab API keys: ``Authorization: Bearer <key>``; every view then acts for ``g.lab_id``."""

from __future__ import annotations

import threading
import time

from flask import Blueprint, current_app, g, request

from api.errors import problem
from api.params import refuse_nul, refuse_unknown_query
from api.security import check_rate
from bloodcount.labs import authenticate, hash_api_key

# A looked-up key is trusted this long, so a poll costs no extra query. Revoking or
# rotating a key therefore takes effect within this many seconds on each API process.
CACHE_SECONDS = 5.0
_cache: dict[str, tuple[int, float]] = {}
_lock = threading.Lock()


def _unauthorized(detail: str):
    response = problem(401, detail, "Missing or invalid API key")
    response.headers["WWW-Authenticate"] = 'Bearer realm="bloodcount"'
    return response


def _lab_for(api_key: str) -> int | None:
    service = current_app.extensions["bloodcount"]
    pepper = service.resources.settings.api_key_pepper
    digest = hash_api_key(api_key, pepper)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached and cached[1] > now:
        return cached[0]
    with service.resources.sessions() as session:
        lab = authenticate(session, api_key, pepper)
        lab_id = lab.id if lab is not None else None
    if lab_id is not None:
        with _lock:
            if len(_cache) > 10_000:
                _cache.clear()
            _cache[digest] = (lab_id, now + CACHE_SECONDS)
    return lab_id


def require_lab():
    """before_request hook: authenticate the caller or answer 401 (429 over its rate)."""
    if request.method == "OPTIONS":  # a CORS preflight carries no credentials
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return _unauthorized(
            "send your lab's API key as 'Authorization: Bearer <key>' "
            "(create one with: bloodcount labs create NAME)"
        )
    lab_id = _lab_for(key.strip())
    if lab_id is None:
        return _unauthorized("this API key is not valid or was revoked; ask for a new one")
    g.lab_id = lab_id
    return check_rate(lab_id)


def protected(name: str) -> Blueprint:
    """A blueprint under /api/v1 whose every route needs a lab's key."""
    bp = Blueprint(name, __name__, url_prefix="/api/v1")
    bp.before_request(require_lab)
    bp.before_request(refuse_nul)  # after the key check: strangers' bodies are never parsed
    bp.before_request(refuse_unknown_query)
    return bp


def clear_cache() -> None:
    with _lock:
        _cache.clear()
