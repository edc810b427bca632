"""Security of the API: keys hashed at rest and compared in constant time, never logged;
per-key rate limits; CORS off by default; security headers; limits that are settings; the
object store out of reach of any user-supplied key."""

from __future__ import annotations

import hmac
import logging

import pytest
from sqlalchemy import select, text

from api.security import TokenBucket
from bloodcount.db.models import Lab
from bloodcount.labs import hash_api_key
from tests.servicekit import ApiEnv, open_api_env, smear_bytes

SLIDE = smear_bytes(3, width=320, height=240)


@pytest.fixture
def api_env(tmp_path):
    yield from open_api_env(tmp_path)


def test_keys_are_stored_only_as_peppered_hmacs(api_env):
    from bloodcount.labs import create_lab

    with api_env.resources.sessions.begin() as session:
        key = create_lab(session, "Peppered", "pepper-1").api_key
    with api_env.resources.engine.connect() as connection:
        dump = "\n".join(str(tuple(r)) for r in connection.execute(text("SELECT * FROM labs")))
    for plain in [key, *api_env.keys.values()]:
        assert plain not in dump and plain[8:20] not in dump  # only the 8-character prefix
    with api_env.resources.sessions() as session:
        lab = session.scalar(select(Lab).where(Lab.name == "Peppered"))
    assert lab.api_key_hash == hash_api_key(key, "pepper-1") != hash_api_key(key, "")


def test_the_key_check_is_constant_time(api_env, monkeypatch):
    import bloodcount.labs as labs
    from api.auth import clear_cache

    calls, real = [], hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(labs.hmac, "compare_digest", spy)
    clear_cache()
    assert api_env.get("/api/v1/batches").status_code == 200
    assert calls and all(len(a) == len(b) == 64 for a, b in calls)


def test_keys_never_reach_the_logs(api_env, caplog, monkeypatch):
    import bloodcount.services as services

    api_env.app.testing = False
    caplog.set_level(logging.DEBUG)
    key = api_env.keys["Lab A"]
    body = api_env.submit({"a.jpg": SLIDE}).get_json()
    api_env.get(body["links"]["self"])
    api_env.get(f"/api/v1/slides/{body['slide_ids'][0]}")
    api_env.client.get("/api/v1/batches", headers={"Authorization": f"Bearer {key}x"})  # wrong
    api_env.client.get("/api/v1/batches", headers={"Authorization": f"Basic {key}"})

    def boom(*args, **kwargs):
        raise RuntimeError("failure while serving")

    monkeypatch.setattr(services, "batch_summary", boom)
    # The status cache would answer from memory; drop its entry so the failure is reached.
    api_env.app.extensions["bloodcount"].status_cache.forget((1, body["id"]))
    assert api_env.get(body["links"]["self"]).status_code == 500  # logged with a traceback
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "failure while serving" in logged  # the capture works
    assert key not in logged and key[8:] not in logged


def test_rate_limit_answers_429_with_retry_after_per_key(tmp_path):
    env = ApiEnv(tmp_path, rate_limit_per_minute=5)
    try:
        answers = [env.get("/api/v1/batches").status_code for _ in range(7)]
        assert answers == [200] * 5 + [429] * 2
        response = env.get("/api/v1/batches")
        assert response.mimetype == "application/problem+json"
        assert int(response.headers["Retry-After"]) >= 1
        assert "BLOODCOUNT_RATE_LIMIT_PER_MINUTE" in response.get_json()["detail"]
        assert env.get("/api/v1/batches", lab="Lab B").status_code == 200  # another key
        assert env.client.get("/healthz").status_code == 200  # probes are not limited
    finally:
        env.close()


def test_rate_limit_zero_turns_it_off(tmp_path):
    env = ApiEnv(tmp_path, rate_limit_per_minute=0)
    try:
        assert {env.get("/api/v1/batches").status_code for _ in range(30)} == {200}
    finally:
        env.close()


def test_token_bucket_refills_at_the_configured_rate():
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])
    assert all(bucket.take("k") == 0 for _ in range(60))
    assert bucket.take("k") == pytest.approx(1.0)
    now[0] += 1.0
    assert bucket.take("k") == 0 and bucket.take("k") > 0


def test_cors_is_off_by_default(api_env):
    origin = {"Origin": "https://evil.example"}
    response = api_env.get("/api/v1/batches", headers=origin)
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = api_env.client.options(
        "/api/v1/batches", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_allows_only_the_configured_origins(tmp_path):
    env = ApiEnv(tmp_path, cors_origins=("https://lims.lab.example",))
    try:
        good = {"Origin": "https://lims.lab.example"}
        response = env.get("/api/v1/batches", headers=good)
        assert response.headers["Access-Control-Allow-Origin"] == "https://lims.lab.example"
        assert "Origin" in response.headers["Vary"]
        preflight = env.client.options(
            "/api/v1/batches", headers={**good, "Access-Control-Request-Method": "POST"}
        )
        assert (
            preflight.status_code == 200
            and "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        )
        other = env.get("/api/v1/batches", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
    finally:
        env.close()


def test_security_headers_on_pages_and_api(api_env):
    page = api_env.client.get("/")
    if page.status_code == 200:  # the web UI is installed
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
    for response in (
        api_env.get("/api/v1/batches"),
        api_env.client.get("/api/v1/nothing"),
        api_env.client.get("/api/v1/docs"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"


def test_request_and_pixel_limits_are_settings(tmp_path):
    env = ApiEnv(
        tmp_path, max_image_pixels=320 * 240 - 1, max_files_per_batch=2, max_upload_bytes=200_000
    )
    try:
        pixels = env.submit({"a.jpg": SLIDE})
        assert (
            pixels.status_code == 422
            and "BLOODCOUNT_MAX_IMAGE_PIXELS" in pixels.get_json()["detail"]
        )
        small = smear_bytes(4, width=200, height=200)
        files = env.submit({f"{i}.jpg": small for i in range(3)})
        assert (
            files.status_code == 413
            and "BLOODCOUNT_MAX_FILES_PER_BATCH" in files.get_json()["detail"]
        )
        body = env.submit({"a.jpg": small + b"\0" * 200_000})
        assert (
            body.status_code == 413 and "BLOODCOUNT_MAX_UPLOAD_BYTES" in body.get_json()["detail"]
        )
        assert env.submit({f"{i}.jpg": small for i in range(2)}).status_code == 202
    finally:
        env.close()


@pytest.mark.parametrize(
    "hostile",
    [
        "..%2F..%2Fbloodcount.db",
        "labs%2F1%2Fbatches",
        "%2E%2E",
        "..",
        "~",
        "%2Fetc%2Fpasswd",
    ],
)
def test_the_store_is_never_reached_through_user_supplied_keys(api_env, hostile):
    body = api_env.submit({"a.jpg": SLIDE}).get_json()
    key = api_env.resources.store.list().__next__()
    assert key.startswith("labs/")
    for path in (
        f"/api/v1/slides/{hostile}/image",
        f"/api/v1/slides/{hostile}/overlay.jpg",
        f"/api/v1/slides/{key.replace('/', '%2F')}/image",
        f"/api/v1/batches/{hostile}/report.csv",
    ):
        response = api_env.get(path)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert response.mimetype == "application/problem+json"
        assert response.data[:3] != SLIDE[:3]
    assert api_env.get(f"/api/v1/slides/{body['slide_ids'][0]}/image").data == SLIDE
