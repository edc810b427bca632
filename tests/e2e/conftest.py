"""The browser tests' world: the whole service (API server and a real worker, on embedded
defaults in a temporary folder) on a free loopback port, a lab with its key, and headless
Chromium driven by Playwright.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run); Playwright's own browser
download is never used. Without Chromium or Playwright the tests skip, or fail under
BLOODCOUNT_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 90


@dataclass
class Service:
    base_url: str
    api_key: str
    home: Path
    logs: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def new_lab(self, name: str) -> str:
        """Another lab on the running service (a test of its own, unseen by the others'
        pages); returns its key."""
        return _create_lab(self.env, name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_env(home: Path, model_dir: Path) -> dict[str, str]:
    # Start from a clean BLOODCOUNT_* slate so a developer's own settings (a PostgreSQL
    # URL, an S3 bucket) never leak into the throwaway service.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOODCOUNT_")}
    env.update(
        {
            "BLOODCOUNT_MODEL_PATH": str(model_dir),
            "BLOODCOUNT_DATABASE_URL": f"sqlite:///{home / 'bloodcount.db'}",
            "BLOODCOUNT_STORAGE_URL": f"file://{home / 'objects'}",
            "BLOODCOUNT_BROKER_URL": "filesystem://",
            "BLOODCOUNT_BROKER_FOLDER": str(home / "broker"),
            "BLOODCOUNT_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _create_lab(env: dict[str, str], name: str = "E2E lab") -> str:
    """Migrate the fresh database and create a lab in it; returns the lab's key."""
    from bloodcount.config import load_settings
    from bloodcount.db.engine import make_engine, make_session_factory
    from bloodcount.db.migrate import upgrade
    from bloodcount.labs import create_lab

    settings = load_settings({k: v for k, v in env.items() if k.startswith("BLOODCOUNT_")})
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            lab = create_lab(session, name, settings.api_key_pepper)
            session.commit()
    finally:
        engine.dispose()
    return lab.api_key


def _wait_until_up(url: str, processes: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                tail = "\n".join(p.read_text(errors="replace")[-3000:] for p in logs)
                pytest.fail(f"the service exited at start-up ({process.args}):\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the service did not answer {url} within {START_TIMEOUT_S}s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def web_model_dir(tmp_path_factory) -> Path:
    """The shipped classifier; while none is shipped, the tiny real LiteRT model the
    service tests build (the pages do not care how good the model is)."""
    from bloodcount.config import load_settings

    shipped = load_settings().model_path
    if (shipped / "model.tflite").is_file():
        return shipped
    try:
        from tests.servicekit import tiny_model

        return tiny_model(tmp_path_factory.mktemp("model"))
    except ImportError as exc:
        skip_or_fail(
            f"no classifier at {shipped} and no TensorFlow to build one ({exc})", service=False
        )


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        skip_or_fail(
            f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", service=True
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[test]')", service=True)
    return CHROMIUM


@pytest.fixture(scope="session")
def web_service(tmp_path_factory, web_model_dir) -> Iterator[Service]:
    """API server and one worker as separate processes, as in production, on SQLite,
    a folder store and the filesystem broker under a temporary folder."""
    home = tmp_path_factory.mktemp("service")
    env = _service_env(home, web_model_dir)
    api_key = _create_lab(env)
    port = _free_port()
    command = [sys.executable, "-m", "bloodcount.cli"]
    logs = [home / "serve.log", home / "worker.log"]
    processes = []
    try:
        for args, log in (
            # One of each, small: the machine running the tests is shared.
            (["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], logs[0]),
            (["worker", "--concurrency", "1", "--pool", "solo"], logs[1]),
        ):
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        command + args, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT
                    )
                )
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_up(base_url + "/signin", processes, logs)
        yield Service(base_url=base_url, api_key=api_key, home=home, logs=logs, env=env)
    finally:
        for process in processes:
            _stop(process)


@pytest.fixture()
def browser_context(chromium, tmp_path):
    """A fresh Chromium profile per test (its own user-data dir), downloads accepted."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1366, "height": 900},
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


def sign_in(browser_context, base_url: str, key: str, problems: list[str] | None = None):
    """A new page signed in with ``key``, on the batches list; script errors go to
    ``problems`` when it is given."""
    page = browser_context.new_page()
    if problems is not None:
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(base_url + "/signin")
    page.get_by_label("Lab API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/batches$"))
    return page


@pytest.fixture()
def screenshot():
    """Save a full-page screenshot under tests/artifacts/screenshots/ (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
