"""The API's contract: OpenAPI document, problem details everywhere, auth, lab isolation,
health probes, and a light API process."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from openapi_spec_validator import validate

from api.docs import SPEC_PATH
from tests.servicekit import ROOT, ApiEnv, open_api_env, smear_bytes


@pytest.fixture
def api_env(tmp_path):
    yield from open_api_env(tmp_path)


PROBLEM = "application/problem+json"


def _assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == status and len(body["detail"]) > 15
    return body


def test_openapi_document_is_valid_and_covers_every_route(api_env):
    spec = api_env.client.get("/api/v1/openapi.json").get_json()
    validate(spec)
    assert spec == yaml.safe_load(SPEC_PATH.read_text())
    documented = {
        (re.sub(r"{(\w+)}", r"<\1>", path), method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    served = {
        (rule.rule, method)
        for rule in api_env.app.url_map.iter_rules()
        if rule.rule.startswith(("/api/", "/healthz", "/readyz"))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == served


def test_docs_page_lists_operations_and_needs_no_network(api_env):
    page = api_env.client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.data.decode()
    assert "/api/v1/batches/{batch_id}/report.csv" in html and 'id="problem-404"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


@pytest.mark.parametrize("header", [None, "Bearer ", "Basic abc", "Bearer bc_not-a-real-key"])
def test_missing_or_wrong_key_is_401(api_env, header):
    headers = {"Authorization": header} if header else {}
    response = api_env.client.get("/api/v1/batches", headers=headers)
    _assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_stops_working(api_env):
    from api.auth import clear_cache
    from bloodcount.labs import revoke_lab

    assert api_env.get("/api/v1/batches").status_code == 200
    with api_env.resources.sessions.begin() as session:
        revoke_lab(session, "Lab A")
    clear_cache()  # revocation reaches a running API within auth.CACHE_SECONDS
    _assert_problem(api_env.get("/api/v1/batches"), 401)


def test_every_endpoint_answers_404_to_another_lab(api_env):
    body = api_env.submit({"a.jpg": smear_bytes(1)}).get_json()
    batch, slide = body["id"], body["slide_ids"][0]
    gets = [
        f"/api/v1/batches/{batch}",
        f"/api/v1/batches/{batch}/slides",
        f"/api/v1/batches/{batch}/report.csv",
        f"/api/v1/batches/{batch}/report.json",
        f"/api/v1/slides/{slide}",
        f"/api/v1/slides/{slide}/image",
        f"/api/v1/slides/{slide}/overlay.jpg",
    ]
    posts = [f"/api/v1/batches/{batch}/{a}" for a in ("retry", "reprocess", "submit")]
    for path in gets:
        assert api_env.get(path).status_code == 200, path
        body = _assert_problem(api_env.get(path, lab="Lab B"), 404)
        assert batch not in body["detail"] or "your lab" in body["detail"]
    for path in posts:
        _assert_problem(api_env.post(path, lab="Lab B"), 404)
    listing = api_env.get("/api/v1/batches", lab="Lab B").get_json()
    assert listing["total"] == 0
    assert api_env.get("/api/v1/batches?status=done", lab="Lab B").get_json()["items"] == []


def test_werkzeug_errors_are_problems(tmp_path):
    env = ApiEnv(tmp_path, max_upload_bytes=1000)
    try:
        _assert_problem(env.client.get("/api/v1/nothing-here"), 404)
        response = env.client.delete("/api/v1/batches")
        _assert_problem(response, 405)
        assert "POST" in response.headers["Allow"]
        big = env.submit({"a.jpg": smear_bytes(1)})
        assert "BLOODCOUNT_MAX_UPLOAD_BYTES" in _assert_problem(big, 413)["detail"]
    finally:
        env.close()


def test_unexpected_error_is_a_500_problem_without_traceback(api_env, monkeypatch):
    import bloodcount.services as services

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(services, "batch_summary", boom)
    api_env.app.testing = False  # as in production: handlers, not propagation
    response = api_env.get("/api/v1/batches/some-id")
    body = _assert_problem(response, 500)
    assert "secret" not in response.data.decode() and "Traceback" not in response.data.decode()
    assert body["title"] == "Internal Server Error"


def test_database_down_is_503_with_retry_after(tmp_path):
    env = ApiEnv(tmp_path)
    try:
        from api import create_app
        from api.auth import clear_cache

        down = env.settings.__class__(
            **{
                **env.settings.__dict__,
                "database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none",
            }
        )
        app = create_app({"SETTINGS": down})
        clear_cache()
        response = app.test_client().get("/api/v1/batches", headers=env.headers())
        assert _assert_problem(response, 503)["title"] == "Database unavailable"
        assert response.headers["Retry-After"]
        ready = app.test_client().get("/readyz")
        body = _assert_problem(ready, 503)
        assert body["checks"]["database"].startswith("failed") and body["checks"]["storage"] == "ok"
    finally:
        env.close()


def test_health_and_readiness(api_env):
    assert api_env.client.get("/healthz").get_json() == {"status": "ok"}
    ready = api_env.client.get("/readyz").get_json()
    assert ready == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok"},
    }


def test_broker_down_makes_readyz_fail(tmp_path):
    env = ApiEnv(tmp_path, task_always_eager=False, broker_url="redis://127.0.0.1:9/0")
    try:
        body = _assert_problem(env.client.get("/readyz"), 503)
        assert body["checks"]["broker"].startswith("failed")
    finally:
        env.close()


def test_the_api_process_never_loads_the_classifier_or_tensorflow():
    code = (
        "import sys; import api; api.create_app(); "
        "heavy = [m for m in ('tensorflow', 'ai_edge_litert', 'keras', 'bloodcount.analysis', "
        "'bloodcount.vision.classifier', 'worker', 'worker.tasks') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_api_modules_themselves_do_not_import_opencv():
    # api.web (another module's) is kept out here; the API's own code must stay cv2-free.
    code = (
        "import sys; sys.modules['api.web'] = None; import api; api.create_app(); "
        "print(sorted(m for m in ('cv2', 'numpy', 'PIL') if m in sys.modules)); "
        "sys.exit(1 if 'cv2' in sys.modules else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
