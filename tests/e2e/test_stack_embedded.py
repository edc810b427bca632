"""`bloodcount run` end to end on the embedded defaults (SQLite, folder store, filesystem
broker): it starts, prints a URL and a key, analyses a submitted batch, and stops every
child on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.servicekit import free_port, smear_bytes

pytestmark = pytest.mark.slow


def _read_until(process, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    pytest.fail(f"no line matching {pattern!r} in:\n{''.join(seen)[-3000:]}")


def _children(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def test_run_serves_a_batch_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOODCOUNT_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bloodcount.cli",
            "run",
            "--port",
            str(port),
            "--concurrency",
            "1",
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = _read_until(process, r"running at (http://127\.0\.0\.1:\d+)/", 120).group(1)
        key = _read_until(process, r"API key: (bc_\S+)", 10).group(1)
        children = _children(process.pid)
        assert len(children) == 3
        headers = {"Authorization": f"Bearer {key}"}
        files = [("files", (f"s{i}.jpg", smear_bytes(i))) for i in range(3)]
        response = requests.post(f"{url}/api/v1/batches", headers=headers, files=files, timeout=30)
        assert response.status_code == 202, response.text
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch = requests.get(
                url + response.headers["Location"], headers=headers, timeout=10
            ).json()
            if batch["status"] not in ("queued", "processing"):
                break
            time.sleep(0.5)
        assert batch["status"] == "done", batch
        assert batch["progress"]["done"] == 3
        assert (tmp_path / "var" / "bloodcount.db").is_file()
        assert any((tmp_path / "var" / "objects").rglob("*.overlay.jpg"))
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0
    for pid in children:
        assert (
            not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
        )


def test_run_twice_reuses_the_demo_lab_with_a_new_key(tmp_path, monkeypatch):
    from bloodcount.commands.service import demo_lab_key
    from bloodcount.db import migrate

    url = f"sqlite:///{tmp_path}/db.sqlite"
    monkeypatch.setenv("BLOODCOUNT_DATABASE_URL", url)
    migrate.upgrade(url)
    first, second = demo_lab_key(), demo_lab_key()
    assert first != second and first.startswith("bc_")
