"""Shared fixtures: where the real data and the real services are, and when to skip.

A test that needs ../shared/data or a live PostgreSQL/Redis/S3 is skipped with the
reason when it is missing, unless BLOODCOUNT_REQUIRE_DATA=1 / BLOODCOUNT_REQUIRE_SERVICES=1
(set by .ci/run), which turn that skip into a failure so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _required(variable: str) -> bool:
    return os.environ.get(variable, "").strip() in {"1", "true", "yes"}


def skip_or_fail(reason: str, *, service: bool) -> None:
    variable = "BLOODCOUNT_REQUIRE_SERVICES" if service else "BLOODCOUNT_REQUIRE_DATA"
    if _required(variable):
        pytest.fail(f"{reason} (and {variable}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The annotated smears (../shared/data or $BLOODCOUNT_DATA)."""
    path = Path(os.environ.get("BLOODCOUNT_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "bccd").is_dir():
        skip_or_fail(f"shared data not found at {path}", service=False)
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a live PostgreSQL for integration tests."""
    url = os.environ.get(
        "BLOODCOUNT_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    if not port_open("127.0.0.1", 5432):
        skip_or_fail("PostgreSQL is not reachable on 127.0.0.1:5432", service=True)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a live Redis for integration tests."""
    if not port_open("127.0.0.1", 6379):
        skip_or_fail("Redis is not reachable on 127.0.0.1:6379", service=True)
    return "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server over real HTTP on a free loopback port, for the whole session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:  # pragma: no cover - moto is a test dependency
        skip_or_fail("moto[server] is not installed", service=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
