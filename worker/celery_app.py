"""The Celery app of the workers and of beat, configured from the ``BLOODCOUNT_*`` settings.

Start it with ``bloodcount worker`` / ``bloodcount beat`` or
``celery -A worker.celery_app worker``.
"""

from __future__ import annotations

from celery import Celery

from bloodcount.config import load_settings
from bloodcount.queue import celery_config

settings = load_settings()
app = Celery("bloodcount", include=["worker.tasks"])
app.conf.update(celery_config(settings))
