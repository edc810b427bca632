"""Fault: the API process (gunicorn, as `bloodcount serve` runs it) SIGKILLed during uploads,
both while the body is still arriving and while the batch is being stored.

No half-created batch may ever be visible: after every kill, each batch row has all its
slide rows and each slide its original in the store. Objects written before the kill but
never committed as rows (invisible to labs) are counted and reported.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.servicekit import ROOT
from tests.support.servers import free_port, port_open, wait_for
from tests.support.stack import (
    Stack,
    create_schema,
    drop_schema,
    fault_env,
    fault_rounds,
    integrity_report,
    smear_set,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class ApiProcess:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLOODCOUNT_")}
        env.update(self.stack.env, PYTHONPATH=str(ROOT))
        log = open(self.stack.workdir / "api.log", "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bloodcount.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--threads",
                "4",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(lambda: port_open(self.port), 60, "API listening")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        wait_for(lambda: not port_open(self.port), 20, "API gone")


def _multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "bcfaultboundary7"
    chunks = []
    for name, data in files.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _send_partly(
    api: ApiProcess, key: str, body: bytes, content_type: str, fraction: float
) -> socket.socket:
    """Open a request and send only ``fraction`` of its body; the socket stays open."""
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    head = (
        f"POST /api/v1/batches HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: int(len(body) * fraction)])
    return sock


@pytest.fixture
def stack(postgres_url, tmp_path):
    schema, url = create_schema(postgres_url)
    stack = Stack(fault_env(tmp_path, url, "filesystem://"), tmp_path)
    try:
        yield stack
    finally:
        stack.close()
        drop_schema(postgres_url, schema)


def test_api_killed_during_uploads_leaves_no_half_batch(stack):
    rounds = fault_rounds(3)
    seed = int(os.environ.get("BLOODCOUNT_FAULT_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    files = smear_set(80, prefix="k")
    body, content_type = _multipart(files)
    key = stack.keys["Lab A"]
    api = ApiProcess(stack)
    outcomes = []
    try:
        for r in range(rounds):
            api.start()
            if r % 2 == 0:  # the body is still arriving
                sock = _send_partly(api, key, body, content_type, rng.uniform(0.1, 0.9))
                time.sleep(0.2)
                api.kill()
                sock.close()
                outcomes.append("mid-body")
            else:  # the body has arrived: the API is storing objects and rows
                result = {}

                def post(result=result):
                    try:
                        result["status"] = requests.post(
                            api.url + "/api/v1/batches",
                            data=body,
                            timeout=60,
                            headers={
                                "Authorization": f"Bearer {key}",
                                "Content-Type": content_type,
                            },
                        ).status_code
                    except requests.RequestException as exc:
                        result["status"] = type(exc).__name__

                thread = threading.Thread(target=post)
                thread.start()
                time.sleep(rng.uniform(0.02, 0.5))
                api.kill()
                thread.join(60)
                outcomes.append(f"while storing ({result.get('status')})")
            problems, orphans = integrity_report(stack)
            assert problems == [], (r, problems)
        # The API comes back and every batch it shows is whole.
        api.start()
        listing = requests.get(
            api.url + "/api/v1/batches?per_page=200", headers=stack.auth(), timeout=30
        ).json()
        for item in listing["items"]:
            assert item["progress"]["total"] == len(files), item
    finally:
        api.kill()
    problems, orphans = integrity_report(stack)
    print(
        f"\nAPI SIGKILL: seed={seed} kills={rounds} {outcomes} batches committed={stack.counts()['batches']} "
        f"problems={len(problems)} orphan objects={len(orphans)}"
    )
    assert problems == []
