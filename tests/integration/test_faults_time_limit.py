"""Fault: a slide whose analysis hangs, with a real worker and a tiny time limit.

One slide hangs in Python (the soft limit interrupts it), one hangs deaf to the soft limit's
signal, as native code is (only the hard limit ends it, by killing the worker's process).
Both must end ``failed`` saying why, the other slides of the batch ``done`` and counted
once, and the worker, with a single process, must still count the next batch: the killed
process was replaced. Before the time limit existed the batch never finished.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bloodcount.db.models import Analysis, Slide
from bloodcount.services.processing import time_limit_reason
from tests.servicekit import smear_bytes
from tests.support.fixtures import redis_copy  # noqa: F401 - a fixture
from tests.support.stack import fault_stack, smear_set
from tests.support.worker_main import HANG_ENV

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT = 5  # seconds: the soft limit comes at 2.5 s; a stand-in slide takes a few ms


@pytest.fixture
def stack(postgres_url, redis_copy, tmp_path):  # noqa: F811 - fixtures
    extra = {
        "BLOODCOUNT_TASK_TIME_LIMIT": str(LIMIT),
        # No re-send by the reconciler while the test runs: the time limit alone must end
        # the hung slides (the reconciler would re-send them after this long).
        "BLOODCOUNT_STUCK_AFTER_SECONDS": "300",
        HANG_ENV: "600",  # far longer than any wait below
    }
    with fault_stack(postgres_url, redis_copy.url, tmp_path, **extra) as stack:
        yield stack


def _slides(stack, batch_id) -> dict[str, Slide]:
    with stack.resources.sessions() as session:
        rows = session.scalars(select(Slide).where(Slide.batch_id == batch_id)).all()
    return {slide.filename: slide for slide in rows}


def _current_analyses(stack, slide_id) -> int:
    with stack.resources.sessions() as session:
        rows = session.scalars(
            select(Analysis.id).where(Analysis.slide_id == slide_id, Analysis.current.is_(True))
        ).all()
    return len(rows)


def test_a_hanging_slide_fails_at_its_time_limit_and_the_worker_keeps_its_capacity(stack):
    assert stack.settings.task_time_limit == LIMIT
    normal = smear_set(10)
    names = list(normal)
    first = {n: normal[n] for n in names[:6]}
    hung = {"hang-1.jpg": smear_bytes(7, width=320, height=240)}
    stuck = {"stuck-1.jpg": smear_bytes(8, width=320, height=240)}
    stack.start_worker(concurrency=1)

    response = stack.submit({**hung, **first, **stuck})
    assert response.status_code == 202, response.text
    batch = response.json()["id"]
    final = stack.wait_finished([batch], timeout=120)
    assert not [s for s in final.values() if s in ("queued", "processing")], final

    slides = _slides(stack, batch)
    for name, killed in (("hang-1.jpg", False), ("stuck-1.jpg", True)):
        slide = slides[name]
        assert slide.status == "failed", (name, slide.status, slide.error)
        assert slide.error == time_limit_reason(stack.settings, killed=killed), name
        assert slide.attempts == 1, name  # failed at once, not run again and again
        assert slide.rbc_count is None and _current_analyses(stack, slide.id) == 0
    problems = stack.counted_once_report(
        [batch], stack.expected_results({**hung, **first, **stuck})
    )
    problems = [p for p in problems if not p.startswith(("hang-1.jpg", "stuck-1.jpg"))]
    assert problems == []

    # The worker's main process lives on, and its one pool process (the killed one's
    # replacement) counts the next batch.
    assert stack.worker is not None and stack.worker.poll() is None
    second = {n: normal[n] for n in names[6:]}
    response = stack.submit(second)
    assert response.status_code == 202, response.text
    batch2 = response.json()["id"]
    final2 = stack.wait_finished([batch2], timeout=90)
    assert set(final2.values()) == {"done"}, final2
    assert stack.counted_once_report([batch2], stack.expected_results(second)) == []
    log = (stack.workdir / "worker-1.log").read_text(errors="replace")
    assert "Hard time limit (5.0s) exceeded" in log or "Hard time limit (5s) exceeded" in log
