"""The task queue as the API and the reconciler see it: send slide ids by task *name*.

The Celery configuration lives here, not in ``worker/``, so the producer (API) and the
consumer (worker) share it without the API importing the worker or the classifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from bloodcount.config import Settings

log = logging.getLogger(__name__)

TASK_PROCESS_SLIDE = "bloodcount.process_slide"
TASK_RECONCILE = "bloodcount.reconcile"
TASK_SWEEP_ORPHANS = "bloodcount.sweep_orphans"
QUEUE_NAME = "bloodcount"
# The embedded broker's transport, named so kombu imports it only where a broker is used.
FOLDER_TRANSPORT = "bloodcount.folder_broker:Transport"


def reconcile_interval(settings: Settings) -> float:
    """How often beat runs the reconciler: often enough to notice a stuck slide soon
    after ``stuck_after_seconds``, never more than once every 5 seconds."""
    return float(min(60, max(5, settings.stuck_after_seconds // 4)))


def slide_time_limits(settings: Settings) -> tuple[float, float]:
    """(soft, hard) time limits, in seconds, of one slide's task (``process_slide``).

    The hard limit is ``task_time_limit``: the worker kills the process running the slide
    and starts another. The soft limit comes first, by 10% of the limit but at least 5 s
    (at most half the limit, for tiny test limits): it raises in the task, which then fails
    the slide under its claim, while its process lives on.
    """
    hard = float(settings.task_time_limit)
    return hard - min(max(5.0, hard / 10), hard / 2), hard


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the producer, the worker and beat."""
    settings.broker_folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": QUEUE_NAME,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Results live in the database; a result backend would only duplicate them.
        "task_ignore_result": True,
        # Ack after the work is done, and hand the message back if the worker dies, so a
        # crash never loses a slide; the claim token makes the redelivery harmless.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Slides take tens of milliseconds; a few in hand per process hides broker latency.
        "worker_prefetch_multiplier": 8,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "beat_schedule": {
            "reconcile": {"task": TASK_RECONCILE, "schedule": reconcile_interval(settings)},
            "sweep-orphans": {
                "task": TASK_SWEEP_ORPHANS,
                "schedule": float(max(60, settings.orphan_after_seconds // 2)),
            },
        },
        "beat_schedule_filename": str(settings.broker_folder / "beat-schedule"),
    }
    if settings.broker_url.startswith("filesystem"):
        queue = settings.broker_folder / "queue"
        control = settings.broker_folder / "control"
        for folder in (queue, control):
            folder.mkdir(parents=True, exist_ok=True)
        # Kombu's own transport, but a message file appears only once it is whole.
        config["broker_transport"] = FOLDER_TRANSPORT
        # In and out are one folder: the API writes messages where the worker reads them.
        config["broker_transport_options"] = {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(control),
            "store_processed": False,
            "polling_interval": 0.1,
        }
        config["worker_enable_remote_control"] = False
    elif settings.broker_url.startswith(("redis", "rediss")):
        # An unacked message returns to the queue after this long; keep it above any
        # plausible slide time so a slow slide is not run twice for nothing.
        config["broker_transport_options"] = {
            "visibility_timeout": max(3600, 2 * settings.stuck_after_seconds)
        }
    return config


class TaskQueue:
    """Sends slides to the workers; with ``task_always_eager`` runs them in this process."""

    def __init__(
        self,
        settings: Settings,
        run_eagerly: Callable[[str], Any] | None = None,
        app: Any = None,
    ) -> None:
        self.settings = settings
        self._run_eagerly = run_eagerly
        if app is not None:
            self.__dict__["app"] = app

    @cached_property
    def app(self) -> Any:
        from celery import Celery

        app = Celery("bloodcount-producer", set_as_current=False)
        app.conf.update(celery_config(self.settings))
        return app

    def enqueue_slides(self, slide_ids: Sequence[str]) -> None:
        """One task per slide, sent by name."""
        if self.settings.task_always_eager:
            if self._run_eagerly is None:
                raise RuntimeError("task_always_eager is set but this process cannot run tasks")
            for slide_id in slide_ids:
                self._run_eagerly(slide_id)
            return
        with self.app.producer_or_acquire() as producer:
            for slide_id in slide_ids:
                self.app.send_task(TASK_PROCESS_SLIDE, args=[slide_id], producer=producer)
        log.debug("sent %d slides to the queue", len(slide_ids))

    def check(self) -> None:
        """Raise if the broker cannot be reached (for readiness probes)."""
        if self.settings.task_always_eager:
            return
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
