"""Thin Celery tasks: each body is one call into :mod:`bloodcount.services`."""

from __future__ import annotations

import logging

from celery import Task, signals

from bloodcount import services
from bloodcount.queue import TASK_PROCESS_SLIDE, TASK_RECONCILE, TASK_SWEEP_ORPHANS, TaskQueue
from bloodcount.resources import Resources
from worker.celery_app import app, settings

log = logging.getLogger(__name__)
_resources: Resources | None = None


def resources() -> Resources:
    """This process's engine and store, made after the fork (a pooled connection must
    never be shared between processes)."""
    global _resources
    if _resources is None:
        _resources = Resources(settings)
    return _resources


@signals.worker_process_init.connect
def _load_model(**_kwargs) -> None:
    # Load the classifier once per worker process, before its first slide.
    from bloodcount.services.processing import shared_analyzer

    try:
        shared_analyzer(settings)
    except Exception:  # every slide will then fail with the reason, visibly
        log.exception("could not load the classifier")


class SlideTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """A permanent failure (or retries used up): the slide is failed with the reason."""
        reason = str(exc) or exc.__class__.__name__
        if isinstance(exc, services.TransientError):
            reason = f"gave up after {self.request.retries + 1} attempts: {reason}"
        try:
            services.mark_failed(resources(), args[0], reason)
        except Exception:  # the reconciler will find the slide and fail it later
            log.exception("could not mark slide %s failed", args[0])


@app.task(
    name=TASK_PROCESS_SLIDE,
    base=SlideTask,
    autoretry_for=(services.TransientError,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=settings.task_max_retries,
)
def process_slide(slide_id: str) -> str:
    return services.process_slide(resources(), slide_id)


@app.task(name=TASK_RECONCILE)
def reconcile() -> dict[str, int]:
    outcome = services.reconcile(resources(), TaskQueue(settings, app=app).enqueue_slides)
    return {"requeued": len(outcome.requeued), "gave_up": len(outcome.gave_up)}


@app.task(name=TASK_SWEEP_ORPHANS)
def sweep_orphans() -> int:
    return len(services.sweep_orphans(resources()))
