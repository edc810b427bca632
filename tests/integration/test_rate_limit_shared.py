"""The rate limit is one per key across API processes when the broker is Redis (real Redis),
and each process still limits on its own while Redis does not answer."""

from __future__ import annotations

import pytest

from tests.servicekit import ApiEnv, free_port


@pytest.fixture
def env(tmp_path, redis_url):
    env = ApiEnv(tmp_path, rate_limit_per_minute=5, broker_url=redis_url)
    yield env
    env.close()


def test_two_processes_share_one_limit_per_key(env):
    from api import create_app

    # A second app on the same settings and database stands for a second gunicorn worker.
    second = create_app({"SETTINGS": env.settings, "ANALYZER": env.analyzer, "TESTING": True})
    try:
        client = second.test_client()

        def get(app_client, lab="Lab A"):
            return app_client.get("/api/v1/batches", headers=env.headers(lab))

        clients = [env.client, client, env.client, client, env.client]
        assert [get(c).status_code for c in clients] == [200] * 5
        # Held per process, the first would have 2 requests left and the second 3.
        assert get(env.client).status_code == 429
        refused = get(client)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert get(client, lab="Lab B").status_code == 200  # another key, its own bucket
    finally:
        second.extensions["bloodcount"].resources.close()


def test_without_redis_each_process_limits_on_its_own(tmp_path):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = ApiEnv(tmp_path, rate_limit_per_minute=5, broker_url=dead)
    try:
        answers = [env.get("/api/v1/batches").status_code for _ in range(7)]
        assert answers == [200] * 5 + [429] * 2
    finally:
        env.close()
