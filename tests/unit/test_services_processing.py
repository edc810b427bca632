"""The worker's use cases: exactly-once results under redelivery, failures, the reconciler."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bloodcount import services
from bloodcount.db.models import Analysis, Cell, Slide
from bloodcount.db.types import utcnow
from bloodcount.services.processing import claim_slide, process_slide
from bloodcount.services.status import derive_status
from bloodcount.storage import StorageError
from tests.servicekit import ApiEnv, smear_bytes


@pytest.fixture
def queued(tmp_path):
    """An ApiEnv whose tasks are not run, with one queued batch of two slides."""
    sent: list[str] = []
    env = ApiEnv(tmp_path, task_always_eager=False)
    env.app.extensions["bloodcount"].queue.enqueue_slides = sent.extend
    body = env.submit({"a.jpg": smear_bytes(1), "b.jpg": smear_bytes(2)}).get_json()
    env.sent = sent
    env.slide_ids = body["slide_ids"]
    yield env
    env.close()


def _count(env, model) -> int:
    with env.resources.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def _slide(env, slide_id) -> Slide:
    with env.resources.sessions() as session:
        return session.get(Slide, slide_id)


def test_redelivery_after_success_does_nothing(queued):
    slide_id = queued.slide_ids[0]
    assert queued.sent == queued.slide_ids
    assert process_slide(queued.resources, slide_id, queued.analyzer) == "done"
    cells = _count(queued, Cell)
    assert cells > 0
    assert process_slide(queued.resources, slide_id, queued.analyzer) == "skipped"
    assert _count(queued, Cell) == cells and _count(queued, Analysis) == 1


def test_two_overlapping_deliveries_write_one_result(queued, monkeypatch):
    """The first delivery is still analysing when a duplicate claims the slide."""
    slide_id = queued.slide_ids[0]
    original = queued.analyzer.analyze_bytes
    inner: list[str] = []
    started: list[bool] = []

    def slow_analysis(data, name, overlay=False, display=False):
        if not started:  # while the first delivery works, the duplicate runs to the end
            started.append(True)
            inner.append(process_slide(queued.resources, slide_id, queued.analyzer))
        return original(data, name, overlay=overlay, display=display)

    monkeypatch.setattr(queued.analyzer, "analyze_bytes", slow_analysis)
    outer = process_slide(queued.resources, slide_id, queued.analyzer)
    assert (outer, inner) == ("superseded", ["done"])
    assert _count(queued, Analysis) == 1
    slide = _slide(queued, slide_id)
    assert slide.attempts == 2 and slide.status == "done"
    assert _count(queued, Cell) == slide.rbc_count + slide.wbc_count + slide.platelet_count


def test_unknown_slide_is_skipped(queued):
    assert process_slide(queued.resources, "no-such-slide", queued.analyzer) == "skipped"


def test_missing_original_fails_the_slide_for_good(queued):
    slide = _slide(queued, queued.slide_ids[0])
    queued.resources.store.delete(slide.object_key)
    assert process_slide(queued.resources, slide.id, queued.analyzer) == "failed"
    assert "missing from the object store" in _slide(queued, slide.id).error


def test_transient_storage_error_is_retryable_then_gives_up(queued, monkeypatch):
    slide_id = queued.slide_ids[0]

    def unreachable(key):
        raise StorageError("S3 get timed out")

    monkeypatch.setattr(queued.resources.store, "get", unreachable)
    attempts = queued.settings.task_max_retries + 1
    for _ in range(attempts):
        with pytest.raises(services.TransientError):
            process_slide(queued.resources, slide_id, queued.analyzer)
    assert _slide(queued, slide_id).status == "processing"
    assert process_slide(queued.resources, slide_id, queued.analyzer) == "failed"
    slide = _slide(queued, slide_id)
    assert slide.status == "failed"
    assert f"gave up after {attempts} attempts" in slide.error and "timed out" in slide.error


def test_mark_failed_only_touches_unfinished_slides(queued):
    done_id, other = queued.slide_ids
    process_slide(queued.resources, done_id, queued.analyzer)
    assert not services.mark_failed(queued.resources, done_id, "late failure")
    assert services.mark_failed(queued.resources, other, "worker crashed: boom")
    assert _slide(queued, other).error == "worker crashed: boom"
    assert _slide(queued, done_id).status == "done"


def test_reconciler_resends_stuck_slides_and_gives_up_in_the_end(queued):
    res = queued.resources
    stuck, fresh = queued.slide_ids
    claim_slide(res, stuck)  # a worker took it, then vanished
    long_ago = utcnow() - timedelta(seconds=queued.settings.stuck_after_seconds + 5)
    with res.sessions.begin() as session:
        session.execute(update(Slide).where(Slide.id == stuck).values(updated_at=long_ago))
    resent: list[str] = []
    outcome = services.reconcile(res, resent.extend)
    assert outcome.requeued == [stuck] and resent == [stuck] and outcome.gave_up == []
    assert services.reconcile(res, resent.extend).requeued == []  # not again right away
    assert process_slide(res, fresh, queued.analyzer) == "done"  # finished slides are left alone

    later = utcnow() + timedelta(seconds=queued.settings.stuck_after_seconds + 5)
    for _ in range(queued.settings.task_max_retries - 1):
        assert services.reconcile(res, resent.extend, now=later).requeued == [stuck]
        later += timedelta(seconds=queued.settings.stuck_after_seconds + 5)
    final = services.reconcile(res, resent.extend, now=later)
    assert stuck in final.gave_up
    assert final.gave_up == [stuck] and final.requeued == []
    assert "lost" in _slide(queued, stuck).error and _slide(queued, stuck).status == "failed"
    assert len(resent) == queued.settings.task_max_retries


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        ({"queued": 3}, "queued"),
        ({"queued": 2, "processing": 1}, "processing"),
        ({"queued": 2, "done": 1}, "processing"),
        ({"done": 3}, "done"),
        ({"done": 2, "failed": 1}, "done_with_errors"),
        ({"failed": 3}, "failed"),
        ({"uploading": 2, "queued": 1}, "uploading"),
    ],
)
def test_batch_status_is_derived_from_slide_counts(counts, status):
    assert derive_status(counts) == status


def test_reconciler_never_fails_a_slide_that_is_only_waiting_in_a_long_queue(queued):
    """A queued slide no worker has taken yet may be behind thousands of others: it is
    re-sent (harmless) but never failed as lost, however long it waits."""
    res = queued.resources
    waiting, _ = queued.slide_ids
    resent: list[str] = []
    later = utcnow()
    for _ in range(queued.settings.task_max_retries + 3):
        later += timedelta(seconds=queued.settings.stuck_after_seconds + 5)
        outcome = services.reconcile(res, resent.extend, now=later)
        assert waiting in outcome.requeued and outcome.gave_up == []
    assert _slide(queued, waiting).status == "queued"
    assert process_slide(res, waiting, queued.analyzer) == "done"
    assert process_slide(res, waiting, queued.analyzer) == "skipped"  # its duplicates are no-ops


def test_stage_timings_are_stored_for_both_pipelines(queued):
    from bloodcount.analysis import Analyzer

    classical_id, dense_id = queued.slide_ids
    assert process_slide(queued.resources, classical_id, queued.analyzer) == "done"
    dense = Analyzer(queued.settings, method="dense")
    assert process_slide(queued.resources, dense_id, dense) == "done"
    classical, found = _slide(queued, classical_id), _slide(queued, dense_id)
    assert classical.detect_ms > 0 and classical.classify_ms > 0
    # The dense pipeline finds and classifies in one pass: its time is all "detect".
    assert found.detect_ms > 0 and found.classify_ms is None
    assert found.total_ms >= found.detect_ms
