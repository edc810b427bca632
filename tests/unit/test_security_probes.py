"""The unauthenticated probes say what failed, never where: no host, port, user or path."""

from __future__ import annotations

from tests.servicekit import ApiEnv


def test_readyz_names_the_failure_without_connection_details(tmp_path):
    env = ApiEnv(tmp_path, task_always_eager=False, broker_url="redis://svc-user@127.0.0.1:9/0")
    try:
        response = env.client.get("/readyz")
        assert response.status_code == 503
        body = response.get_json()
        assert body["checks"]["broker"].startswith("failed: ")
        text = response.data.decode()
        for secret in ("127.0.0.1", ":9", "svc-user", "Connection refused", str(tmp_path)):
            assert secret not in text, secret
    finally:
        env.close()
