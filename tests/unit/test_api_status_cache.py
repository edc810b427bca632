"""Polling reuses a running batch's summary for a moment, and never a finished one's."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from bloodcount.db.models import Slide
from tests.servicekit import ApiEnv, smear_bytes


@pytest.fixture
def env(tmp_path):
    env = ApiEnv(tmp_path, task_always_eager=False, status_cache_seconds=60)
    env.app.extensions["bloodcount"].queue.enqueue_slides = lambda ids: None
    yield env
    env.close()


def _set_status(env, batch_id: str, status: str) -> None:
    with env.resources.sessions.begin() as session:
        session.execute(update(Slide).where(Slide.batch_id == batch_id).values(status=status))


def test_running_batch_is_served_from_the_cache_finished_one_never(env):
    batch_id = env.submit({"a.jpg": smear_bytes(1)}).get_json()["id"]
    url = f"/api/v1/batches/{batch_id}"
    assert env.get(url).get_json()["status"] == "queued"
    _set_status(env, batch_id, "processing")
    assert env.get(url).get_json()["status"] == "queued"  # cached: seen late, never wrong
    env.app.extensions["bloodcount"].status_cache.forget((1, batch_id))
    _set_status(env, batch_id, "failed")
    assert env.get(url).get_json()["status"] == "failed"  # finished: read afresh, not cached
    _set_status(env, batch_id, "queued")  # as a retry from another API process would
    assert env.get(url).get_json()["status"] == "queued"


def test_retry_drops_the_cached_summary(env):
    body = env.submit({"a.jpg": smear_bytes(1), "b.jpg": smear_bytes(2)}).get_json()
    url = f"/api/v1/batches/{body['id']}"
    assert env.get(url).get_json()["progress"]["queued"] == 2  # now cached
    failed, working = body["slide_ids"]
    with env.resources.sessions.begin() as session:
        session.execute(update(Slide).where(Slide.id == failed).values(status="failed"))
        session.execute(update(Slide).where(Slide.id == working).values(status="processing"))
    assert env.post(f"{url}/retry").status_code == 202
    progress = env.get(url).get_json()["progress"]
    assert (progress["queued"], progress["processing"]) == (1, 1)  # read afresh after the retry


def test_other_labs_never_share_an_entry(env):
    batch_id = env.submit({"a.jpg": smear_bytes(1)}).get_json()["id"]
    assert env.get(f"/api/v1/batches/{batch_id}").status_code == 200
    assert env.get(f"/api/v1/batches/{batch_id}", lab="Lab B").status_code == 404


def test_zero_turns_the_cache_off(tmp_path):
    env = ApiEnv(tmp_path, task_always_eager=False, status_cache_seconds=0)
    try:
        env.app.extensions["bloodcount"].queue.enqueue_slides = lambda ids: None
        batch_id = env.submit({"a.jpg": smear_bytes(1)}).get_json()["id"]
        url = f"/api/v1/batches/{batch_id}"
        assert env.get(url).get_json()["status"] == "queued"
        _set_status(env, batch_id, "processing")
        assert env.get(url).get_json()["status"] == "processing"
    finally:
        env.close()
