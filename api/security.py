"""Per-key rate limits, CORS (off unless BLOODCOUNT_CORS_ORIGINS lists origins) and the
headers every API response carries.

The rate limit is a token bucket per lab key: ``rate_limit_per_minute`` requests per key
(bursts up to that many), exceeding it answers 429 with Retry-After. With a Redis broker
the bucket lives in Redis, so every API process and host shares one limit per key; held
in each process instead, N gunicorn workers on M hosts would allow N x M times as many.
If Redis does not answer, each process falls back to its own bucket (the API keeps
serving: uploads survive a Redis outage, so the limit must not turn it into one).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time

from flask import Flask, Response, current_app, request

from api.errors import problem

log = logging.getLogger(__name__)

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


# The same bucket in Redis, atomically (one script run), on Redis's clock, so that the
# processes and hosts sharing it agree. State: a hash per key, gone after a full refill.
_REDIS_BUCKET = """
local capacity, refill = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, last = tonumber(state[1]) or capacity, tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - last) * refill)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / refill end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / refill) + 1)
return tostring(wait)
"""


class SharedTokenBucket:
    """:class:`TokenBucket` kept in Redis; this process's own bucket while Redis is down."""

    def __init__(
        self, per_minute: int, url: str, namespace: str, fallback: TokenBucket | None = None
    ) -> None:
        import redis

        # Lab ids are per database: deployments (or test runs) sharing one Redis must not
        # share buckets, so keys carry a digest of the database they count for.
        self.prefix = f"bloodcount:ratelimit:{hashlib.sha256(namespace.encode()).hexdigest()[:12]}:"
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0
        # A limit check must never hold a request up for long: a short timeout, no retry.
        self._redis = redis.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25, retry_on_timeout=False
        )
        self._script = self._redis.register_script(_REDIS_BUCKET)
        self.fallback = fallback or TokenBucket(per_minute)
        self._warned = 0.0

    def take(self, key: object) -> float:
        import redis

        try:
            return float(
                self._script(keys=[f"{self.prefix}{key}"], args=[self.capacity, self.refill])
            )
        except redis.RedisError as exc:
            if time.monotonic() - self._warned > 60:  # once a minute, not once a request
                self._warned = time.monotonic()
                log.warning("rate limit: Redis unavailable (%s); limiting per process", exc)
            return self.fallback.take(key)


def check_rate(lab_id: int) -> Response | None:
    """A 429 problem if this lab's key is over its limit, else None."""
    bucket: TokenBucket | SharedTokenBucket | None = current_app.extensions.get(
        "bloodcount.ratelimit"
    )
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
    settings = app.config["SETTINGS"]
    limit = settings.rate_limit_per_minute
    if limit > 0 and settings.broker_url.startswith(("redis://", "rediss://")):
        app.extensions["bloodcount.ratelimit"] = SharedTokenBucket(
            limit, settings.broker_url, settings.database_url
        )
    elif limit > 0:
        app.extensions["bloodcount.ratelimit"] = TokenBucket(limit)
    app.after_request(_after)
