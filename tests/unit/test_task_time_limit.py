"""A slide's time limit: the setting, Celery's limits on the slide task, and what the
services do when a limit fires (the worker-level test is
tests/integration/test_faults_time_limit.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select

from bloodcount.config import SettingsError, load_settings
from bloodcount.db.models import Analysis, Cell, Slide
from bloodcount.db.types import utcnow
from bloodcount.queue import (
    TASK_PROCESS_SLIDE,
    TASK_RECONCILE,
    TASK_SWEEP_ORPHANS,
    slide_time_limits,
)
from bloodcount.services.processing import (
    claim_slide,
    fail_timed_out,
    process_slide,
    time_limit_reason,
)
from bloodcount.storage import StorageError
from tests.servicekit import ROOT, ApiEnv, smear_bytes


def test_the_time_limit_defaults_to_300_s_and_is_read_from_the_environment():
    assert load_settings({}).task_time_limit == 300
    assert load_settings({"BLOODCOUNT_TASK_TIME_LIMIT": "40"}).task_time_limit == 40


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "ten"])
def test_a_time_limit_that_is_not_a_positive_whole_number_is_refused(raw):
    with pytest.raises(SettingsError, match="BLOODCOUNT_TASK_TIME_LIMIT"):
        load_settings({"BLOODCOUNT_TASK_TIME_LIMIT": raw})


@pytest.mark.parametrize(
    "limit, soft", [(300, 270), (3600, 3240), (60, 54), (20, 15), (10, 5), (5, 2.5), (1, 0.5)]
)
def test_the_soft_limit_comes_a_tenth_earlier_but_at_least_5_s(limit, soft):
    settings = load_settings({}, task_time_limit=limit)
    assert slide_time_limits(settings) == (soft, limit)


def test_the_slide_task_has_both_limits_and_the_housekeeping_tasks_none(tmp_path):
    """The production worker app, imported as ``bloodcount worker`` does, with the
    variable set in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOODCOUNT_")}
    env.update(
        BLOODCOUNT_TASK_TIME_LIMIT="40",
        BLOODCOUNT_BROKER_FOLDER=str(tmp_path / "broker"),
        PYTHONPATH=str(ROOT),
    )
    probe = (
        "import json; from worker.tasks import app\n"
        "print(json.dumps({name: [app.tasks[name].soft_time_limit, app.tasks[name].time_limit,"
        " str(getattr(app.tasks[name].Request, '__name__', '')), app.tasks[name].acks_late,"
        " app.tasks[name].reject_on_worker_lost] for name in %r}))"
        % [TASK_PROCESS_SLIDE, TASK_RECONCILE, TASK_SWEEP_ORPHANS]
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    tasks = json.loads(out.stdout.strip().splitlines()[-1])
    assert tasks[TASK_PROCESS_SLIDE] == [35, 40, "SlideRequest", True, True]
    for name in (TASK_RECONCILE, TASK_SWEEP_ORPHANS):
        assert tasks[name][:2] == [None, None], name


def test_the_reasons_name_the_limit_and_the_variable():
    settings = load_settings({}, task_time_limit=120)
    stopped, killed = time_limit_reason(settings), time_limit_reason(settings, killed=True)
    assert stopped.startswith("the analysis was stopped after 108 s, near its time limit of 120 s")
    assert killed.startswith("the analysis took longer than its time limit of 120 s")
    assert "worker process was killed" in killed
    for reason in (stopped, killed):
        assert "(BLOODCOUNT_TASK_TIME_LIMIT)" in reason
        assert reason.endswith("retry the batch if the workers were overloaded")


class FakeSoftLimit(Exception):
    """Stands for Celery's SoftTimeLimitExceeded, which the services do not import."""


@pytest.fixture
def queued(tmp_path):
    """An ApiEnv whose tasks are not run, with one queued batch of two slides."""
    env = ApiEnv(tmp_path, task_always_eager=False, task_time_limit=60)
    env.app.extensions["bloodcount"].queue.enqueue_slides = lambda ids: None
    body = env.submit({"a.jpg": smear_bytes(1), "b.jpg": smear_bytes(2)}).get_json()
    env.slide_ids = body["slide_ids"]
    yield env
    env.close()


def _slide(env, slide_id) -> Slide:
    with env.resources.sessions() as session:
        return session.get(Slide, slide_id)


def _count(env, model) -> int:
    with env.resources.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("where", ["analysis", "decode", "store"])
def test_a_soft_limit_after_the_claim_fails_the_slide_with_the_reason(queued, monkeypatch, where):
    slide_id = queued.slide_ids[0]

    def interrupted(*_args, **_kwargs):
        raise FakeSoftLimit()

    # In the analysis (a hung slide), inside PIL while the file's header is read (where a
    # malformed file is reported as such), or while writing its overlay (a late one).
    target, name = {
        "analysis": (queued.analyzer, "analyze_bytes"),
        "decode": (Image, "open"),
        "store": (queued.resources.store, "put"),
    }[where]
    monkeypatch.setattr(target, name, interrupted)
    outcome = process_slide(
        queued.resources, slide_id, queued.analyzer, time_limit_errors=(FakeSoftLimit,)
    )
    assert outcome == "failed"
    slide = _slide(queued, slide_id)
    assert slide.status == "failed" and slide.attempts == 1
    assert slide.error == time_limit_reason(queued.settings)
    assert _count(queued, Analysis) == 0 and _count(queued, Cell) == 0
    # A redelivery of its message (or a re-send) does not run the slide again.
    assert process_slide(queued.resources, slide_id, queued.analyzer) == "skipped"
    # The other slide is not affected.
    monkeypatch.undo()
    assert process_slide(queued.resources, queued.slide_ids[1], queued.analyzer) == "done"


def test_a_soft_limit_while_noting_a_store_error_still_fails_the_slide(queued, monkeypatch):
    """The limit fires in the database write that remembers a transient store error."""
    slide_id = queued.slide_ids[0]
    engine = queued.resources.engine

    def interrupted(*_args, **_kwargs):
        monkeypatch.undo()  # once: failing the slide afterwards needs the database
        raise FakeSoftLimit()

    def store_down(_key):
        # Patched only now, after the claim, so the next engine.begin() is _note_error's.
        monkeypatch.setattr(engine, "begin", interrupted)
        raise StorageError("connection refused")

    monkeypatch.setattr(queued.resources.store, "get", store_down)
    outcome = process_slide(
        queued.resources, slide_id, queued.analyzer, time_limit_errors=(FakeSoftLimit,)
    )
    assert outcome == "failed"
    slide = _slide(queued, slide_id)
    assert slide.status == "failed" and slide.error == time_limit_reason(queued.settings)


def test_errors_not_named_as_time_limits_are_not_caught(queued, monkeypatch):
    def interrupted(*_args, **_kwargs):
        raise FakeSoftLimit()

    monkeypatch.setattr(queued.analyzer, "analyze_bytes", interrupted)
    with pytest.raises(FakeSoftLimit):
        process_slide(queued.resources, queued.slide_ids[0], queued.analyzer)
    assert _slide(queued, queued.slide_ids[0]).status == "processing"


def test_after_a_hard_limit_only_the_killed_runs_claim_is_failed(queued):
    slide_id = queued.slide_ids[0]
    reason = time_limit_reason(queued.settings, killed=True)
    killed_run = claim_slide(queued.resources, slide_id)
    assert killed_run is not None
    # Queued, or finished: never touched.
    assert not fail_timed_out(queued.resources, queued.slide_ids[1], reason, utcnow())
    # A claim made after the killed run's (another delivery) is left to finish.
    before_the_claim = utcnow() - timedelta(seconds=30)
    assert not fail_timed_out(queued.resources, slide_id, reason, before_the_claim)
    assert _slide(queued, slide_id).status == "processing"
    # The killed run's own claim is failed, with the reason, and counts nothing.
    assert fail_timed_out(queued.resources, slide_id, reason, utcnow() + timedelta(seconds=1))
    slide = _slide(queued, slide_id)
    assert (slide.status, slide.error, slide.rbc_count) == ("failed", reason, None)
    assert not fail_timed_out(queued.resources, slide_id, "again", utcnow())
    assert process_slide(queued.resources, slide_id, queued.analyzer) == "skipped"
    assert _count(queued, Cell) == 0
