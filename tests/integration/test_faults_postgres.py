"""Fault: PostgreSQL (a private cluster on its own port) stopped mid-batch, then started.

While it is down, every API answer is either a 503 problem (with Retry-After) or, for
/healthz, 200; never a traceback, never HTML. Once it is back the tasks retry (and the
reconciler re-sends what gave up waiting) until every slide is counted, once.
"""

from __future__ import annotations

import io
import time

import pytest
import requests

from tests.support.fixtures import pg_cluster, redis_copy  # noqa: F401 - fixtures
from tests.support.servers import wait_for
from tests.support.stack import (
    Stack,
    done_count,
    fault_env,
    fault_rounds,
    integrity_report,
    smear_set,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOWN_SECONDS = 8


@pytest.fixture
def stack(pg_cluster, redis_copy, tmp_path):  # noqa: F811 - fixtures
    stack = Stack(fault_env(tmp_path, pg_cluster.url, redis_copy.url), tmp_path)
    stack.start_api()
    try:
        yield stack
    finally:
        stack.close()


def _probe_api(stack, batch_id: str, slide_id: str, image: bytes) -> list[str]:
    """Ask the API everything while the database is down; return what was wrong."""
    wrong = []
    probes = [
        ("GET", f"/api/v1/batches/{batch_id}"),
        ("GET", "/api/v1/batches"),
        ("GET", f"/api/v1/batches/{batch_id}/slides"),
        ("GET", f"/api/v1/slides/{slide_id}"),
        ("GET", f"/api/v1/batches/{batch_id}/report.csv"),
        ("GET", "/api/v1/reports/counts"),
        ("POST", f"/api/v1/batches/{batch_id}/retry"),
        ("GET", "/readyz"),
        ("POST", "/api/v1/batches"),
    ]
    for method, path in probes:
        files = [("files", ("late.jpg", io.BytesIO(image)))] if path == "/api/v1/batches" else None
        response = requests.request(
            method, stack.url + path, headers=stack.auth(), files=files, timeout=60
        )
        text = response.text
        if (
            response.status_code != 503
            or response.headers.get("Content-Type") != "application/problem+json"
        ):
            wrong.append(
                f"{method} {path}: {response.status_code} {response.headers.get('Content-Type')}"
            )
        elif (
            "Traceback" in text
            or "psycopg" in text.lower()
            or not response.headers.get("Retry-After")
        ):
            wrong.append(f"{method} {path}: leaks internals or lacks Retry-After: {text[:200]}")
    health = requests.get(stack.url + "/healthz", timeout=10)
    if health.status_code != 200:
        wrong.append(f"/healthz: {health.status_code}")
    return wrong


def test_postgres_down_mid_batch_then_back(stack, pg_cluster):  # noqa: F811 - fixtures
    rounds = fault_rounds(1)
    sources = smear_set(16 * rounds)
    names = list(sources)
    batch_ids, wrong = [], []
    stack.start_worker()
    for r in range(rounds):
        response = stack.submit({n: sources[n] for n in names[16 * r : 16 * (r + 1)]})
        assert response.status_code == 202, response.text
        body = response.json()
        batch_ids.append(body["id"])
        before = done_count(stack, batch_ids)
        wait_for(lambda b=before: done_count(stack, batch_ids) >= b + 2, 90, "two slides done")
        stack.resources.engine.dispose()
        pg_cluster.stop("fast")
        down_at = time.monotonic()
        time.sleep(2.5)
        wrong += _probe_api(stack, body["id"], body["slide_ids"][0], sources[names[0]])
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
        pg_cluster.start()

    final = stack.wait_finished(batch_ids, timeout=300)
    assert all(s in ("done", "failed") for s in final.values()), final
    problems = stack.counted_once_report(batch_ids, stack.expected_results(sources))
    integrity, orphans = integrity_report(stack)
    print(
        f"\nPostgreSQL stop: outages={rounds} x {DOWN_SECONDS}s slides={len(final)} "
        f"api-wrong={len(wrong)} problems={len(problems)} orphans={len(orphans)}"
    )
    assert wrong == []
    assert problems == [] and integrity == []
    assert len(final) == len(sources)
    assert orphans == []  # the refused upload (late.jpg) left no object behind
