"""Thin Celery tasks: each body is one call into :mod:`bloodcount.services`."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

from celery import Task, signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.worker import state as worker_state
from celery.worker.request import Request

from bloodcount import services
from bloodcount.db.engine import make_engine
from bloodcount.db.types import utcnow
from bloodcount.queue import (
    TASK_PROCESS_SLIDE,
    TASK_RECONCILE,
    TASK_SWEEP_ORPHANS,
    TaskQueue,
    slide_time_limits,
)
from bloodcount.resources import Resources
from bloodcount.services.processing import fail_timed_out, time_limit_reason
from worker.celery_app import app, settings

log = logging.getLogger(__name__)
_resources: Resources | None = None
_resources_pid: int | None = None
SOFT_TIME_LIMIT, TIME_LIMIT = slide_time_limits(settings)


def resources() -> Resources:
    """This process's engine and store, made after the fork (a pooled connection must
    never be shared between processes): a process forked from one that had made them
    makes its own."""
    global _resources, _resources_pid
    if _resources is None or _resources_pid != os.getpid():
        _resources, _resources_pid = Resources(settings), os.getpid()
    return _resources


@signals.worker_process_init.connect
def _load_model(**_kwargs) -> None:
    # Load the analysis models (the detector by default) once per worker process, before
    # its first slide.
    from bloodcount.services.processing import shared_analyzer

    try:
        shared_analyzer(settings)
    except Exception:  # every slide will then fail with the reason, visibly
        log.exception("could not load the analysis models")


def _fail_after_hard_limit(slide_id: str, accepted_at: float | None) -> None:
    """In the worker's main process: fail the slide whose process was killed at the hard
    limit. A short-lived engine, closed at once: the main process forks the replacement
    process, which must not inherit a pool of connections."""
    # The killed run claimed the slide just after its process accepted the task; a claim
    # made more than the soft limit's lead later belongs to another delivery of the slide
    # and is left alone (fail_timed_out). Celery gives the acceptance as a Unix time.
    lead = timedelta(seconds=TIME_LIMIT - SOFT_TIME_LIMIT)
    if accepted_at:
        claimed_before = datetime.fromtimestamp(accepted_at, UTC) + lead
    else:
        claimed_before = utcnow() - timedelta(seconds=TIME_LIMIT) + lead
    res = Resources(settings)
    connect_args = {} if settings.is_sqlite else {"connect_args": {"connect_timeout": 5}}
    res.engine = make_engine(settings.database_url, **connect_args)
    try:
        reason = time_limit_reason(settings, killed=True)
        if fail_timed_out(res, slide_id, reason, claimed_before):
            log.warning("slide %s failed: %s", slide_id, reason)
    finally:
        res.close()


class SlideRequest(Request):
    """A slide's request in the worker's main process, which enforces the time limits.

    With ``task_acks_late`` and Celery's default ``task_acks_on_timeout`` the message of
    a task killed at its hard limit is acknowledged, not re-delivered (celery/worker/
    request.py: ``on_failure`` and ``on_timeout``), and older Celery 5 releases run no
    task hook there at all (celery#10226 added ``Task.on_failure``). So the slide is
    failed here; if that write fails, the slide stays processing until the reconciler
    re-sends it, bounded by its attempts and re-sends.
    """

    def on_timeout(self, soft: bool, timeout: float) -> None:
        # During a cold shutdown Celery terminates tasks through this path: not the slide's
        # fault, so it is left to the reconciler.
        if not soft and not worker_state.should_terminate:
            try:
                _fail_after_hard_limit(self.args[0], self.time_start)
            except Exception:
                log.exception("could not fail slide %s after its time limit", self.args[0])
        super().on_timeout(soft, timeout)


class SlideTask(Task):
    Request = SlideRequest

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """A permanent failure (or retries used up): the slide is failed with the reason."""
        if isinstance(exc, TimeLimitExceeded):
            # Recent Celery calls this in the worker's main process after a hard limit;
            # SlideRequest.on_timeout has failed the slide already, checking its claim.
            return
        reason = str(exc) or exc.__class__.__name__
        if isinstance(exc, SoftTimeLimitExceeded):  # raised before the slide was claimed
            reason = time_limit_reason(settings)
        elif isinstance(exc, services.TransientError):
            reason = f"gave up after {self.request.retries + 1} attempts: {reason}"
        try:
            services.mark_failed(resources(), args[0], reason)
        except Exception:  # the reconciler will find the slide and fail it later
            log.exception("could not mark slide %s failed", args[0])


# Only slides have a time limit: their work is one image, bounded, and a hung slide would
# hold a worker process for good. The reconciler's and the orphan sweep's work grows with
# the backlog and the store (a sweep lists every object), any interruption would only make
# beat start them over from the beginning, and they wait only on network calls, which
# have their own timeouts.
@app.task(
    name=TASK_PROCESS_SLIDE,
    base=SlideTask,
    autoretry_for=(services.TransientError,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=settings.task_max_retries,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=TIME_LIMIT,
)
def process_slide(slide_id: str) -> str:
    return services.process_slide(resources(), slide_id, time_limit_errors=(SoftTimeLimitExceeded,))


@app.task(name=TASK_RECONCILE)
def reconcile() -> dict[str, int]:
    outcome = services.reconcile(resources(), TaskQueue(settings, app=app).enqueue_slides)
    return {"requeued": len(outcome.requeued), "gave_up": len(outcome.gave_up)}


@app.task(name=TASK_SWEEP_ORPHANS)
def sweep_orphans() -> int:
    return len(services.sweep_orphans(resources()))
