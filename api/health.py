"""/healthz (the process answers) and /readyz (database, broker and storage answer)."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from api.context import service
from api.errors import problem

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    svc = service()
    checks = {}

    def database() -> None:
        with svc.resources.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    for name, check in (
        ("database", database),
        ("broker", svc.queue.check),
        ("storage", svc.resources.store.check),
    ):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; say which and why
            log.warning("readiness check %s failed: %s", name, exc)
            # The probe needs no key: name the failure, keep hosts, ports and users in the log.
            checks[name] = f"failed: {exc.__class__.__name__}"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        response = problem(
            503,
            f"not ready: {', '.join(failed)} cannot be reached",
            "Service not ready",
            checks=checks,
        )
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "ready", "checks": checks})
