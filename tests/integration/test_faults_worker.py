"""Fault: a worker SIGKILLed at random moments in the middle of batches.

Every slide must end ``done`` with exactly the counts and cells of one Analyzer run on the
same bytes: none lost (the reconciler re-sends what died with the worker), none counted
twice (claim tokens discard a superseded run). Default 3 kills; BLOODCOUNT_FAULT_ROUNDS=10
for the full run recorded in docs/reliability.md.
"""

from __future__ import annotations

import os
import random
import time

import pytest
from sqlalchemy import select

from bloodcount.db.models import Slide
from tests.support.fixtures import redis_copy  # noqa: F401 - a fixture
from tests.support.stack import (
    fault_rounds,
    fault_stack,
    smear_set,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def stack(postgres_url, redis_copy, tmp_path):  # noqa: F811 - fixtures
    with fault_stack(postgres_url, redis_copy.url, tmp_path) as stack:
        yield stack


def _claims(stack, batch_ids) -> dict[str, tuple[str, str | None]]:
    """{slide id: (status, claim token)}: every claim writes a fresh token."""
    with stack.resources.sessions() as session:
        rows = session.execute(
            select(Slide.id, Slide.status, Slide.claim_token).where(
                Slide.batch_id.in_(list(batch_ids))
            )
        ).all()
    return {r.id: (r.status, r.claim_token) for r in rows}


def _new_claims(stack, batch_ids, before) -> dict[str, str]:
    """{slide id: status} of the slides claimed since ``before``."""
    now = _claims(stack, batch_ids)
    old = {i: token for i, (_, token) in before.items()}
    return {i: s for i, (s, token) in now.items() if token and token != old.get(i)}


def _wait_for_claim(stack, batch_ids, before, timeout: float = 90) -> None:
    """Wait until the new worker claims a slide, running the reconciler every 3 s as beat
    does in production: slides prefetched by a killed worker sit unacked in Redis until
    the reconciler re-sends them, and with no fresh batch they may be all there is."""
    deadline = time.monotonic() + timeout
    next_reconcile = time.monotonic() + 3
    while time.monotonic() < deadline:
        if _new_claims(stack, batch_ids, before):
            return
        if time.monotonic() >= next_reconcile:
            stack.reconcile()
            next_reconcile = time.monotonic() + 3
        time.sleep(0.1)
    raise TimeoutError(f"no slide claimed within {timeout} s")


def test_sigkill_worker_mid_batch_loses_and_doubles_nothing(stack):
    rounds = fault_rounds(3)
    seed = int(os.environ.get("BLOODCOUNT_FAULT_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    sources = smear_set(12 * (rounds + 1))
    names = list(sources)
    batch_ids, kills_mid_slide = [], 0
    for _ in range(rounds):
        statuses = stack.slide_statuses(batch_ids)
        if sum(s in ("queued", "processing") for s in statuses.values()) < 4:
            chunk = {n: sources[n] for n in names[12 * len(batch_ids) : 12 * (len(batch_ids) + 1)]}
            response = stack.submit(chunk)
            assert response.status_code == 202, response.text
            batch_ids.append(response.json()["id"])
        claims = _claims(stack, batch_ids)
        stack.start_worker()
        # Kill at a random moment after the worker has claimed a slide (a slide left
        # "processing" by the previous kill is not a claim by this worker).
        _wait_for_claim(stack, batch_ids, claims)
        time.sleep(rng.uniform(0.0, 0.4))
        kills_mid_slide += "processing" in _new_claims(stack, batch_ids, claims).values()
        stack.kill_worker()

    stack.start_worker()
    final = stack.wait_finished(batch_ids, timeout=240)
    assert all(s in ("done", "failed") for s in final.values()), final
    used = {n: sources[n] for n in names[: 12 * len(batch_ids)]}
    problems = stack.counted_once_report(batch_ids, stack.expected_results(used))
    print(
        f"\nworker SIGKILL: seed={seed} kills={rounds} (with a slide in hand: {kills_mid_slide}) "
        f"batches={len(batch_ids)} slides={len(final)} problems={len(problems)}"
    )
    assert problems == []
    assert len(final) == len(used)
