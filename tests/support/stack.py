"""The batch service assembled from real parts for fault tests: a worker process (which a
test may SIGKILL), the API on a real HTTP server in this process, and the final checks.

Every loop here is bounded in time and stops by itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select, text

from bloodcount.config import load_settings
from bloodcount.db.engine import make_engine
from bloodcount.db.models import Analysis, Batch, Cell, Slide
from bloodcount.queue import TaskQueue
from bloodcount.resources import Resources
from tests.servicekit import ROOT, StandInClassifier, prepare_database
from tests.support.servers import free_port

ACTIVE = ("uploading", "queued", "processing")


def schema_url(base_url: str, schema: str) -> str:
    return f"{base_url}?options=-csearch_path%3D{schema}"


def create_schema(base_url: str) -> tuple[str, str]:
    """A fresh schema in ``base_url``'s database: (schema name, URL that uses it)."""
    schema = f"f_{uuid.uuid4().hex[:10]}"
    engine = make_engine(base_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    return schema, schema_url(base_url, schema)


def drop_schema(base_url: str, schema: str) -> None:
    engine = make_engine(base_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """The URL of a new schema in ``base_url``'s database, dropped on exit."""
    schema, url = create_schema(base_url)
    try:
        yield url
    finally:
        drop_schema(base_url, schema)


class Stack:
    """Settings from ``env`` (BLOODCOUNT_* variables), a migrated database with two labs,
    a worker that can be started and killed, and an API on a loopback port."""

    def __init__(self, env: Mapping[str, str], workdir: Path) -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.settings = load_settings(self.env)
        self.keys = prepare_database(self.settings.database_url)
        self.resources = Resources(self.settings)
        self.queue = TaskQueue(self.settings)
        self.worker: subprocess.Popen | None = None
        self.worker_starts = 0
        self.supervisor_restarts = 0
        self.server = None
        self.url = ""

    # -- worker ---------------------------------------------------------------------------
    def start_worker(self, concurrency: int = 1) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLOODCOUNT_")}
        env.update(self.env, PYTHONPATH=str(ROOT))
        self.worker_starts += 1
        log = open(self.workdir / f"worker-{self.worker_starts}.log", "wb")
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.worker_main",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "--loglevel=WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self.worker

    def supervise_worker(self) -> None:
        """Start the worker again if it exited, as production's supervisor does
        (docker-compose.yml: ``restart: unless-stopped``); counted in ``supervisor_restarts``."""
        if self.worker is not None and self.worker.poll() is not None:
            self.supervisor_restarts += 1
            self.start_worker()

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool processes at once (its process group)."""
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait(30)
        self.worker = None

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait(30)
        self.worker = None

    # -- API ------------------------------------------------------------------------------
    def start_api(self) -> str:
        from werkzeug.serving import make_server

        from api import create_app
        from api.auth import clear_cache

        clear_cache()
        port = free_port()
        self.app = create_app({"SETTINGS": self.settings})  # production mode: no TESTING
        self.server = make_server("127.0.0.1", port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def auth(self, lab: str = "Lab A") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[lab]}"}

    def submit(
        self, files: Mapping[str, bytes], lab: str = "Lab A", timeout: float = 60
    ) -> requests.Response:
        parts = [("files", (name, io.BytesIO(data))) for name, data in files.items()]
        return requests.post(
            self.url + "/api/v1/batches", headers=self.auth(lab), files=parts, timeout=timeout
        )

    # -- reconciler and waiting -----------------------------------------------------------
    def reconcile(self) -> None:
        """What beat runs every few seconds: re-send slides stuck past stuck_after_seconds."""
        from bloodcount import services

        services.reconcile(self.resources, self.queue.enqueue_slides)

    def slide_statuses(self, batch_ids: Iterable[str]) -> dict[str, str]:
        with self.resources.sessions() as session:
            rows = session.execute(
                select(Slide.id, Slide.status).where(Slide.batch_id.in_(list(batch_ids)))
            ).all()
        return dict(rows)

    def wait_finished(
        self,
        batch_ids: Iterable[str],
        timeout: float,
        reconcile_every: float = 3.0,
        supervise: bool = False,
    ) -> dict[str, str]:
        """Poll until no slide of the batches is active, running the reconciler meanwhile
        (and, with ``supervise``, restarting a worker that exited); returns {slide id:
        status} (some may still be active when ``timeout`` passes)."""
        batch_ids = list(batch_ids)
        deadline = time.monotonic() + timeout
        next_reconcile = time.monotonic() + reconcile_every
        while True:
            if supervise:
                self.supervise_worker()
            statuses = self.slide_statuses(batch_ids)
            if not any(s in ACTIVE for s in statuses.values()) or time.monotonic() > deadline:
                return statuses
            if time.monotonic() >= next_reconcile:
                try:
                    self.reconcile()
                except Exception:  # the database or broker may be down on purpose
                    pass
                next_reconcile = time.monotonic() + reconcile_every
            time.sleep(0.5)

    # -- the final checks -----------------------------------------------------------------
    def expected_results(self, sources: Mapping[str, bytes]) -> dict[str, Any]:
        """What one Analyzer run in this process gives for each file."""
        from bloodcount.analysis import Analyzer

        analyzer = Analyzer(self.settings, classifier=StandInClassifier())
        return {name: analyzer.analyze_bytes(data, name) for name, data in sources.items()}

    def counted_once_report(
        self, batch_ids: Iterable[str], expected: Mapping[str, Any]
    ) -> list[str]:
        """Problems with the slides of ``batch_ids``: a slide not done, counts that differ from
        the single Analyzer run, or cells stored more (or less) than once."""
        problems = []
        with self.resources.sessions() as session:
            slides = session.scalars(select(Slide).where(Slide.batch_id.in_(list(batch_ids)))).all()
            for slide in slides:
                want = expected[slide.filename]
                if slide.status != "done":
                    problems.append(f"{slide.filename}: {slide.status} ({slide.error})")
                    continue
                counts = {
                    "RBC": slide.rbc_count,
                    "WBC": slide.wbc_count,
                    "Platelets": slide.platelet_count,
                }
                if counts != want.counts:
                    problems.append(f"{slide.filename}: counts {counts} != {want.counts}")
                current = session.scalars(
                    select(Analysis.id).where(
                        Analysis.slide_id == slide.id, Analysis.current.is_(True)
                    )
                ).all()
                if len(current) != 1:
                    problems.append(f"{slide.filename}: {len(current)} current analyses")
                    continue
                cells = session.scalar(
                    select(func.count()).select_from(Cell).where(Cell.analysis_id == current[0])
                )
                if cells != len(want.cells):
                    problems.append(
                        f"{slide.filename}: {cells} cells stored, {len(want.cells)} found"
                    )
        return problems

    def counts(self) -> dict[str, int]:
        with self.resources.sessions() as session:
            return {
                "batches": session.scalar(select(func.count()).select_from(Batch)),
                "slides": session.scalar(select(func.count()).select_from(Slide)),
            }

    def close(self) -> None:
        self.kill_worker()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.resources.close()


def fault_rounds(default: int) -> int:
    """How many faults a loop injects: ``BLOODCOUNT_FAULT_ROUNDS`` for the full run."""
    raw = os.environ.get("BLOODCOUNT_FAULT_ROUNDS", "").strip()
    return max(1, min(int(raw), 50)) if raw else default


def smear_set(count: int, prefix: str = "s", seed0: int = 100) -> dict[str, bytes]:
    """``count`` distinct synthetic smears (JPEG, 320x240: quick to make and to analyse)."""
    from tests.servicekit import smear_bytes

    return {
        f"{prefix}{i:03d}.jpg": smear_bytes(seed0 + i, width=320, height=240) for i in range(count)
    }


def integrity_report(stack: Stack) -> tuple[list[str], list[str]]:
    """(problems, orphans): a batch whose slide rows are not all there, a slide row whose
    original is missing from the store; and stored objects that no row refers to."""
    problems = []
    with stack.resources.sessions() as session:
        batches = session.execute(select(Batch.id, Batch.slide_count)).all()
        slides = session.execute(
            select(Slide.batch_id, Slide.object_key, Slide.overlay_key, Slide.status)
        ).all()
    per_batch: dict[str, int] = {}
    for row in slides:
        per_batch[row.batch_id] = per_batch.get(row.batch_id, 0) + 1
    for batch_id, declared in batches:
        if per_batch.get(batch_id, 0) != declared:
            problems.append(f"batch {batch_id}: {per_batch.get(batch_id, 0)} of {declared} slides")
    stored = set(stack.resources.store.list())
    for row in slides:
        if row.status != "uploading" and row.object_key not in stored:
            problems.append(f"slide object {row.object_key} missing")
    referenced = {r.object_key for r in slides} | {r.overlay_key for r in slides if r.overlay_key}
    return problems, sorted(stored - referenced)


def fault_env(tmp_path: Path, database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """BLOODCOUNT_* for a fault test: a folder store unless ``extra`` names another, a quick
    reconciler (6 s) and room for many re-sends (the tests fault far more than production)."""
    env = {
        "BLOODCOUNT_DATABASE_URL": database_url,
        "BLOODCOUNT_BROKER_URL": broker_url,
        "BLOODCOUNT_STORAGE_URL": f"file://{tmp_path}/objects",
        "BLOODCOUNT_BROKER_FOLDER": str(tmp_path / "broker"),
        "BLOODCOUNT_STUCK_AFTER_SECONDS": "6",
        "BLOODCOUNT_TASK_MAX_RETRIES": "30",
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def fault_stack(
    postgres_url: str, broker_url: str, tmp_path: Path, **extra: str
) -> Iterator[Stack]:
    """A fault test's stack with its API started, on a fresh PostgreSQL schema dropped after
    (``extra``: more BLOODCOUNT_* settings, as for :func:`fault_env`)."""
    schema, url = create_schema(postgres_url)
    stack = Stack(fault_env(tmp_path, url, broker_url, **extra), tmp_path)
    try:
        stack.start_api()
        yield stack
    finally:
        stack.close()
        drop_schema(postgres_url, schema)


def done_count(stack: Stack, batch_ids: Iterable[str]) -> int:
    return sum(s == "done" for s in stack.slide_statuses(batch_ids).values())
