"""Per-key rate limits, CORS (off unless BLOODCOUNT_CORS_ORIGINS lists origins) and the
headers every API response carries.

The rate limit is a token bucket per lab key, held in this process: each API process
allows ``rate_limit_per_minute`` requests per key (bursts up to that many), so N gunicorn
workers allow up to N times as many. Exceeding it answers 429 with Retry-After.
"""

from __future__ import annotations

import math
import threading
import time

from flask import Flask, Response, current_app, request

from api.errors import problem

API_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, If-None-Match"
CORS_EXPOSED = "Location, Retry-After, ETag, Idempotent-Replayed"


class TokenBucket:
    """``rate`` tokens per minute per key, at most ``rate`` held; thread-safe."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: object) -> float:
        """0 if a request may go ahead now, else the seconds until one may."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:  # idle keys refill to full anyway
                self._buckets.clear()
            return (1.0 - tokens) / self.refill


def check_rate(lab_id: int) -> Response | None:
    """A 429 problem if this lab's key is over its limit, else None."""
    bucket: TokenBucket | None = current_app.extensions.get("bloodcount.ratelimit")
    if bucket is None:
        return None
    wait = bucket.take(lab_id)
    if wait <= 0:
        return None
    seconds = max(1, math.ceil(wait))
    per_minute = int(bucket.capacity)
    response = problem(
        429,
        f"more than {per_minute} requests a minute with this API key "
        f"(BLOODCOUNT_RATE_LIMIT_PER_MINUTE); wait {seconds} s and poll less often",
        "Too many requests",
    )
    response.headers["Retry-After"] = str(seconds)
    return response


def _after(response: Response) -> Response:
    for name, value in API_HEADERS.items():
        response.headers.setdefault(name, value)
    origins = current_app.config["SETTINGS"].cors_origins
    origin = request.headers.get("Origin")
    if origins and origin and (origin in origins or "*" in origins):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
    if origins:
        response.vary.add("Origin")
    return response


def init_app(app: Flask) -> None:
    limit = app.config["SETTINGS"].rate_limit_per_minute
    if limit > 0:
        app.extensions["bloodcount.ratelimit"] = TokenBucket(limit)
    app.after_request(_after)
