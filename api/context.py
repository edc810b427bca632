"""What the views need from the app: the process's resources and task queue."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g

from api.status_cache import StatusCache
from bloodcount.queue import TaskQueue
from bloodcount.resources import Resources


@dataclass
class ApiService:
    resources: Resources
    queue: TaskQueue
    status_cache: StatusCache


def service() -> ApiService:
    return current_app.extensions["bloodcount"]


def resources() -> Resources:
    return service().resources


def lab_id() -> int:
    return g.lab_id


def enqueue(slide_ids) -> None:
    service().queue.enqueue_slides(slide_ids)
