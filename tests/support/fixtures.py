"""Pytest fixtures shared by the fault tests: import them into a test module by name."""

from __future__ import annotations

import pytest

from tests.conftest import skip_or_fail
from tests.support.servers import PostgresCluster, RedisServer, S3Server


@pytest.fixture
def redis_copy():
    """A private Redis on a free port (the machine's own on 6379 stays untouched)."""
    try:
        server = RedisServer()
        server.start()
    except FileNotFoundError as exc:
        skip_or_fail(str(exc), service=True)
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def pg_cluster():
    """A private PostgreSQL cluster on a free port, which the test may stop and start."""
    try:
        cluster = PostgresCluster()
        cluster.start()
    except (FileNotFoundError, OSError) as exc:
        skip_or_fail(f"cannot start a throw-away PostgreSQL: {exc}", service=True)
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def s3_server():
    """A private moto S3 server that the test may make unreachable and bring back."""
    try:
        server = S3Server()
        server.start()
    except ImportError as exc:
        skip_or_fail(f"moto[server] is not installed: {exc}", service=True)
    try:
        yield server
    finally:
        server.stop()
