"""The orphan sweep deletes only images without a batch row, and only old ones."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bloodcount import services
from bloodcount.db.types import new_id, utcnow
from tests.servicekit import ApiEnv, smear_bytes


@pytest.fixture
def env(tmp_path):
    env = ApiEnv(tmp_path, task_always_eager=False)
    env.app.extensions["bloodcount"].queue.enqueue_slides = lambda ids: None
    yield env
    env.close()


def test_sweep_removes_old_orphans_and_keeps_everything_else(env):
    store = env.resources.store
    body = env.submit({"a.jpg": smear_bytes(1)}).get_json()
    kept = list(store.list("labs/"))
    assert len(kept) == 1 and body["id"] in kept[0]

    # What an API killed between writing the image and committing the rows leaves behind.
    orphan = f"labs/1/batches/{new_id()}/{new_id()}.jpg"
    store.put(orphan, b"left behind")
    unrelated = "elsewhere/keep.bin"
    store.put(unrelated, b"not ours")

    # Too young: an upload might still be in flight.
    assert services.sweep_orphans(env.resources) == []
    later = utcnow() + timedelta(seconds=env.settings.orphan_after_seconds + 1)
    assert services.sweep_orphans(env.resources, now=later) == [orphan]
    assert not store.exists(orphan)
    assert store.exists(kept[0]) and store.exists(unrelated)
    assert services.sweep_orphans(env.resources, now=later) == []
