"""The HTTP API: a Flask app factory with one blueprint per resource, all under /api/v1.

``create_app(config=None)``: ``config`` may hold ``SETTINGS`` (a bloodcount Settings; by
default read from the environment), ``ANALYZER`` (used when tasks run eagerly) and any
Flask option. The API sends slides to the workers by task name and never imports the
worker, TensorFlow or the classifier (unless tasks run eagerly in this process).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from api import batches, docs, errors, health, reports, security, slides
from api.context import ApiService
from api.responses import ApiJSONProvider
from api.status_cache import StatusCache
from bloodcount.config import Settings, load_settings
from bloodcount.queue import TaskQueue
from bloodcount.resources import Resources

log = logging.getLogger(__name__)
# Parts a multipart upload may hold besides its files: 'reference', and a few to spare so
# that a batch one file over BLOODCOUNT_MAX_FILES_PER_BATCH gets the message naming it.
FORM_FIELDS = 16


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    config = dict(config or {})
    settings: Settings = config.pop("SETTINGS", None) or load_settings()
    analyzer = config.pop("ANALYZER", None)
    app = Flask(__name__)
    app.json_provider_class = ApiJSONProvider
    app.json = ApiJSONProvider(app)
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        # Flask parses at most 1,000 parts by default: a batch of exactly
        # BLOODCOUNT_MAX_FILES_PER_BATCH (1000) files plus its 'reference' was refused as
        # 'a form field is over 500,000 bytes', and one over it never got the message
        # naming that setting. Room for every file, the fields and the count's own check.
        MAX_FORM_PARTS=settings.max_files_per_batch + FORM_FIELDS,
    )
    app.config.update(config)

    resources = Resources(settings)

    def run_eagerly(slide_id: str) -> str:
        from bloodcount.services import process_slide

        return process_slide(resources, slide_id, analyzer)

    app.extensions["bloodcount"] = ApiService(
        resources, TaskQueue(settings, run_eagerly), StatusCache(settings.status_cache_seconds)
    )
    errors.init_app(app)
    security.init_app(app)
    for module in (health, docs, batches, slides, reports):
        app.register_blueprint(module.bp)
    _register_web_pages(app)
    return app


def _register_web_pages(app: Flask) -> None:
    """The web UI (api/web, another module's) when it is installed; the API works without it."""
    try:
        from api.web import bp as web_bp
    except ImportError as exc:
        log.info("web pages not available: %s", exc)
        return
    app.register_blueprint(web_bp)
