"""The batch service on real parts: PostgreSQL (a throw-away schema), Redis (db 15), a moto
S3 server over HTTP, a real Celery worker process and the API on a real HTTP server.

A batch of shared BCCD slides goes in over HTTP and is polled to completion; each slide's
counts must equal what the Analyzer gives in this process for the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
from sqlalchemy import func, select, text, update

from bloodcount.config import load_settings
from bloodcount.db.engine import make_engine
from bloodcount.db.models import Analysis, Slide
from bloodcount.db.types import utcnow
from bloodcount.queue import TASK_PROCESS_SLIDE, TaskQueue
from bloodcount.resources import Resources
from bloodcount.storage import S3Store
from tests.servicekit import ROOT, free_port, prepare_database, zip_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FILES = [
    "BloodImage_00000.jpg",
    "BloodImage_00001.jpg",
    "BloodImage_00002.jpg",
    "BloodImage_00003.jpg",
]


@pytest.fixture(scope="module")
def stack(postgres_url, redis_url, s3_endpoint, data_dir, tmp_path_factory):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = make_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    bucket = f"bc-{uuid.uuid4().hex[:8]}"
    env = {
        "BLOODCOUNT_DATABASE_URL": f"{postgres_url}?options=-csearch_path%3D{schema}",
        "BLOODCOUNT_BROKER_URL": redis_url,
        "BLOODCOUNT_STORAGE_URL": f"s3://{bucket}/slides",
        "BLOODCOUNT_S3_ENDPOINT_URL": s3_endpoint,
        "BLOODCOUNT_BROKER_FOLDER": str(tmp_path_factory.mktemp("broker")),
    }
    settings = load_settings(env)
    S3Store(bucket, endpoint_url=s3_endpoint).ensure_bucket()
    keys = prepare_database(settings.database_url)

    worker_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    worker_env.pop("BLOODCOUNT_TEST_DATABASE_URL", None)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app",
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env=worker_env,
    )
    from werkzeug.serving import make_server

    from api import create_app

    port = free_port()
    server = make_server("127.0.0.1", port, create_app({"SETTINGS": settings}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    resources = Resources(settings)
    try:
        yield {
            "url": f"http://127.0.0.1:{port}",
            "keys": keys,
            "settings": settings,
            "resources": resources,
            "data": data_dir / "bccd" / "JPEGImages",
        }
    finally:
        server.shutdown()
        worker.terminate()
        worker.wait(30)
        resources.close()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _auth(stack, lab="Lab A"):
    return {"Authorization": f"Bearer {stack['keys'][lab]}"}


def _poll(stack, location, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(stack["url"] + location, headers=_auth(stack), timeout=10)
        body = response.json()
        if body["status"] not in ("queued", "processing", "uploading"):
            return body
        assert response.headers["Retry-After"]
        time.sleep(0.5)
    pytest.fail(f"batch not finished after {timeout} s: {body}")


def test_batch_over_http_matches_the_analyzer(stack):
    from bloodcount.services.processing import shared_analyzer

    data = {name: (stack["data"] / name).read_bytes() for name in FILES}
    files = [
        ("files", (FILES[0], data[FILES[0]])),
        ("files", (FILES[1], data[FILES[1]])),
        ("files", ("rest.zip", zip_of({n: data[n] for n in FILES[2:]}))),
    ]
    response = requests.post(
        stack["url"] + "/api/v1/batches",
        headers=_auth(stack),
        files=files,
        data={"reference": "INT-1"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    batch = _poll(stack, response.headers["Location"])
    assert batch["status"] == "done", batch
    assert batch["progress"]["done"] == len(FILES)

    slides = requests.get(
        stack["url"] + batch["links"]["slides"], headers=_auth(stack), timeout=10
    ).json()["items"]
    analyzer = shared_analyzer(stack["settings"])
    expected = [analyzer.analyze_bytes(data[name], name).counts for name in FILES]
    assert [s["counts"] for s in slides] == expected
    assert sum(sum(c.values()) for c in expected) > 0

    # On S3, images are handed out as presigned URLs.
    image = requests.get(
        stack["url"] + f"/api/v1/slides/{slides[0]['id']}/image",
        headers=_auth(stack),
        allow_redirects=False,
        timeout=10,
    )
    assert image.status_code == 302
    assert requests.get(image.headers["Location"], timeout=10).content == data[FILES[0]]
    overlay = requests.get(
        stack["url"] + f"/api/v1/slides/{slides[0]['id']}/overlay.jpg",
        headers=_auth(stack),
        timeout=10,
    )
    assert overlay.content.startswith(b"\xff\xd8\xff")


def test_presigned_upload_then_submit(stack):
    name = FILES[0]
    created = requests.post(
        stack["url"] + "/api/v1/batches",
        headers=_auth(stack),
        json={"files": [{"name": name}]},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    early = requests.post(stack["url"] + body["links"]["submit"], headers=_auth(stack), timeout=10)
    assert early.status_code == 409 and name in early.json()["detail"]
    upload = body["uploads"][0]
    assert (
        requests.put(
            upload["url"], data=(stack["data"] / name).read_bytes(), timeout=30
        ).status_code
        == 200
    )
    submitted = requests.post(
        stack["url"] + body["links"]["submit"], headers=_auth(stack), timeout=10
    )
    assert submitted.status_code == 202
    assert _poll(stack, submitted.headers["Location"])["status"] == "done"


def test_redelivered_and_lost_messages(stack):
    res = stack["resources"]
    response = requests.post(
        stack["url"] + "/api/v1/batches",
        headers=_auth(stack),
        files=[("files", ("a.jpg", (stack["data"] / FILES[1]).read_bytes()))],
        timeout=30,
    )
    batch = _poll(stack, response.headers["Location"])
    slide_id = response.json()["slide_ids"][0]
    queue = TaskQueue(stack["settings"])
    # A duplicate delivery of a finished slide changes nothing.
    queue.app.send_task(TASK_PROCESS_SLIDE, args=[slide_id])
    # A lost message: the slide is queued again but no task exists; the reconciler sends it.
    with res.sessions.begin() as session:
        session.execute(
            update(Slide)
            .where(Slide.id == slide_id)
            .values(status="queued", updated_at=utcnow().replace(year=2000))
        )
    from bloodcount import services

    outcome = services.reconcile(res, queue.enqueue_slides)
    assert slide_id in outcome.requeued
    again = _poll(stack, response.headers["Location"])
    assert again["status"] == "done" and again["totals"] == batch["totals"]
    with res.sessions() as session:
        analyses = session.scalar(
            select(func.count()).select_from(Analysis).where(Analysis.slide_id == slide_id)
        )
        current = session.scalar(
            select(func.count())
            .select_from(Analysis)
            .where(Analysis.slide_id == slide_id, Analysis.current.is_(True))
        )
    assert (analyses, current) == (2, 1)  # the reconciled run, and nothing from the duplicate


def test_other_labs_see_nothing(stack):
    response = requests.get(
        stack["url"] + "/api/v1/batches", headers=_auth(stack, "Lab B"), timeout=10
    )
    assert response.json()["total"] == 0
