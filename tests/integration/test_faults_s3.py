"""Fault: the S3 server (a private moto server) unreachable mid-batch, then back.

Workers retry until the store answers again; every slide ends counted once. Uploads during
the outage are refused with a 503 problem and leave nothing: no rows, and, once the store
is back, no object that no row refers to.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from bloodcount.storage import S3Store
from tests.support.fixtures import redis_copy, s3_server  # noqa: F401 - fixtures
from tests.support.servers import wait_for
from tests.support.stack import (
    done_count,
    fault_rounds,
    fault_stack,
    integrity_report,
    smear_set,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOWN_SECONDS = 8


@pytest.fixture
def stack(postgres_url, redis_copy, s3_server, tmp_path):  # noqa: F811 - fixtures
    bucket = f"bc-{uuid.uuid4().hex[:8]}"
    S3Store(bucket, endpoint_url=s3_server.endpoint).ensure_bucket()
    store = {
        "BLOODCOUNT_STORAGE_URL": f"s3://{bucket}/slides",
        "BLOODCOUNT_S3_ENDPOINT_URL": s3_server.endpoint,
    }
    with fault_stack(postgres_url, redis_copy.url, tmp_path, **store) as stack:
        yield stack


def test_s3_unreachable_mid_batch_then_back(stack, s3_server):  # noqa: F811 - fixtures
    rounds = fault_rounds(1)
    sources = smear_set(16 * rounds)
    names = list(sources)
    batch_ids, refused = [], []
    stack.start_worker()
    for r in range(rounds):
        response = stack.submit({n: sources[n] for n in names[16 * r : 16 * (r + 1)]})
        assert response.status_code == 202, response.text
        batch_ids.append(response.json()["id"])
        before = done_count(stack, batch_ids)
        wait_for(lambda b=before: done_count(stack, batch_ids) >= b + 2, 90, "two slides done")
        s3_server.stop()
        down_at = time.monotonic()
        rows_before = stack.counts()
        response = stack.submit(
            {"during-outage.jpg": sources[names[0]], "second.jpg": sources[names[1]]}
        )
        refused.append(response)
        assert response.status_code == 503, response.text
        assert response.headers["Content-Type"] == "application/problem+json"
        body = response.json()
        assert body["title"] == "Object store unavailable" and response.headers["Retry-After"]
        assert "Traceback" not in response.text
        assert stack.counts() == rows_before
        # Polling still works: it needs only the database.
        poll = requests.get(
            f"{stack.url}/api/v1/batches/{batch_ids[-1]}", headers=stack.auth(), timeout=30
        )
        assert poll.status_code == 200
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
        s3_server.start()

    final = stack.wait_finished(batch_ids, timeout=300)
    assert all(s in ("done", "failed") for s in final.values()), final
    problems = stack.counted_once_report(batch_ids, stack.expected_results(sources))
    integrity, orphans = integrity_report(stack)
    print(
        f"\nS3 outage: outages={rounds} x {DOWN_SECONDS}s slides={len(final)} refused uploads="
        f"{len(refused)} problems={len(problems)} orphans={len(orphans)}"
    )
    assert problems == [] and integrity == []
    assert orphans == []
    assert len(final) == len(sources)
