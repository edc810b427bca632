"""Fuzz the whole API from its own OpenAPI document (/api/v1/openapi.json) with schemathesis:
no 5xx, and every response matches the document (status, content type, headers, body).

Bounded: BLOODCOUNT_FUZZ_EXAMPLES examples per operation (default 15; the full run in
docs/reliability.md used more). Runs on SQLite and a moto S3 server over HTTP (so presigned
uploads work), tasks in process with the stand-in classifier, with a real batch of Lab A so that some generated
requests hit real ids. Driven through hypothesis directly (one test per operation).
"""

from __future__ import annotations

import os
import uuid

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.docs import SPEC_PATH
from tests.servicekit import open_api_env, smear_bytes

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("BLOODCOUNT_FUZZ_EXAMPLES", "15"))
METHODS = ("get", "post", "put", "patch", "delete")
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, item in yaml.safe_load(SPEC_PATH.read_text())["paths"].items()
    for method in item
    if method in METHODS and path != "/api/v1/openapi.json"  # schemathesis skips its own source
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, s3_endpoint):
    from bloodcount.storage import S3Store

    bucket = f"fuzz-{uuid.uuid4().hex[:8]}"
    S3Store(bucket, endpoint_url=s3_endpoint).ensure_bucket()
    store = {"storage_url": f"s3://{bucket}/slides", "s3_endpoint_url": s3_endpoint}
    for env in open_api_env(tmp_path_factory.mktemp("fuzz"), rate_limit_per_minute=0, **store):
        env.app.testing = False  # production error handling: a bug is a 500, not an exception
        body = env.submit({"a.jpg": smear_bytes(1, width=320, height=240)}).get_json()
        env.ids = {"batch_id": body["id"], "slide_id": body["slide_ids"][0]}
        env.schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", env.app)
        yield env


def _throwaway_batch(api) -> dict[str, str]:
    body = api.submit({"t.jpg": smear_bytes(2, width=160, height=120)}).get_json()
    return {"batch_id": body["id"], "slide_id": body["slide_ids"][0]}


def _empty_range(query) -> bool:
    from datetime import UTC, datetime

    def parse(raw):
        try:
            value = datetime.fromisoformat(raw)
        except (TypeError, ValueError):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    query = query or {}
    start, end = parse(query.get("from")), parse(query.get("to"))
    try:
        return start is not None and end is not None and start >= end
    except OverflowError:
        return False


def _operation(api, label: str):
    for result in api.schema.get_all_operations():
        operation = result.ok()
        if operation.label == label:
            return operation
    raise AssertionError(f"{label} is in api/openapi.yaml but schemathesis cannot load it")


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_never_fails_and_always_matches_its_document(api, label):
    operation = _operation(api, label)
    seen = []
    # Any bytes are a schema-valid `format: binary` file, but only images are slides: the
    # positive-data check cannot hold for uploads. Every other check still runs on them.
    excluded = [positive_data_acceptance] if label == "POST /api/v1/batches" else []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        # Every other case uses the lab's real ids, so lookups succeed as well as fail.
        if case.path_parameters and len(seen) % 2:
            # A delete gets a batch of its own: the shared one must outlive it for the
            # operations fuzzed after this one.
            ids = _throwaway_batch(api) if case.method == "DELETE" else api.ids
            for name, value in ids.items():
                if name in case.path_parameters:
                    case.path_parameters[name] = value
        seen.append(case)
        case.headers = {**(case.headers or {}), **api.headers()}
        # A schema-valid 'from' at or after 'to' is refused on purpose (an empty range is
        # a lab's typo, not a question): no OpenAPI schema can say "from before to".
        refused = excluded + ([positive_data_acceptance] if _empty_range(case.query) else [])
        case.call_and_validate(excluded_checks=refused)

    check()
    assert seen
