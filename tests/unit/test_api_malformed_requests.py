"""Bad request bodies, headers and query parameters that used to answer 500, be accepted,
drop a file without a word, or be refused with a misleading message (found by probing)."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from bloodcount.db.models import Batch, Slide
from tests.servicekit import open_api_env, smear_bytes
from tests.support.badinput import tiny_png

GOOD = smear_bytes(7, width=160, height=120)
MULTIPART = "multipart/form-data; boundary=b0undary"


@pytest.fixture
def api_env(tmp_path):
    for env in open_api_env(tmp_path, task_always_eager=False):
        env.app.testing = False  # production error handling: a bug is a 500, not an exception
        yield env


def _stored(env) -> tuple[int, int]:
    with env.resources.sessions() as session:
        return tuple(session.scalar(select(func.count()).select_from(m)) for m in (Batch, Slide))


def _problem(response, status: int, *needles: str) -> dict:
    assert response.status_code == status, response.data[:400]
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    for needle in needles:
        assert needle in body["detail"], body["detail"]
    return body


def _with_presigned_uploads(env, monkeypatch):
    """The JSON path as on S3: the folder store would answer 501 before storing anything."""
    monkeypatch.setattr(
        env.resources.store, "presigned_put_url", lambda key, expiry: f"https://s3.test/{key}"
    )


def _multipart(parts: list[tuple[bytes, bytes]]) -> bytes:
    body = b""
    for header, data in parts:
        body += b"--b0undary\r\n" + header + b"\r\n\r\n" + data + b"\r\n"
    return body + b"--b0undary--\r\n"


# --- JSON bodies


@pytest.mark.parametrize("reference", [123, 1.5, True, ["RUN-7"], {"id": "RUN-7"}])
def test_a_json_reference_that_is_not_a_string_is_a_422(api_env, reference):
    response = api_env.post(
        "/api/v1/batches", json={"files": [{"name": "a.jpg"}], "reference": reference}
    )
    _problem(response, 422, "reference must be a string")


def test_json_nested_past_the_parsers_recursion_limit_is_a_422(api_env):
    response = api_env.post(
        "/api/v1/batches", data=b"[" * 100_000, headers={"Content-Type": "application/json"}
    )
    _problem(response, 422, "nested too deeply")


def test_json_that_is_not_utf8_is_named_as_such(api_env):
    response = api_env.post(
        "/api/v1/batches",
        data='{"files": [{"name": "é.jpg"}]}'.encode("latin-1"),
        headers={"Content-Type": "application/json; charset=latin-1"},
    )
    _problem(response, 422, "not valid JSON", "UTF-8")


@pytest.mark.parametrize(
    "body",
    [
        b'{"files": [{"name": "a.jpg"}], "reference": "a\\u0000b"}',  # PostgreSQL: a 500
        b'{"files": [{"name": "a.jpg"}], "reference": "\\ud800"}',  # lone surrogate: a 500
        b'{"files": [{"name": "\\ud800.jpg"}]}',
        b'{"files": [{"name": "a.jpg"}], "reference": "RUN\\u001b[31m-7"}',
    ],
)
def test_json_text_the_database_cannot_store_or_logs_would_run_is_refused(
    api_env, monkeypatch, body
):
    _with_presigned_uploads(api_env, monkeypatch)
    before = _stored(api_env)
    response = api_env.post(
        "/api/v1/batches", data=body, headers={"Content-Type": "application/json"}
    )
    _problem(response, 422, "control character")
    assert _stored(api_env) == before


# --- multipart


def test_a_files_part_without_a_filename_is_refused_not_dropped(api_env):
    before = _stored(api_env)
    body = _multipart(
        [
            (b'Content-Disposition: form-data; name="files"; filename="a.jpg"', GOOD),
            (b'Content-Disposition: form-data; name="files"', b"b.jpg"),  # no filename
        ]
    )
    response = api_env.post("/api/v1/batches", data=body, headers={"Content-Type": MULTIPART})
    body = _problem(response, 422, "without a filename")
    assert body["parameter"] == "files"
    assert _stored(api_env) == before


def test_an_image_sent_without_a_filename_is_not_called_a_nul_character(api_env):
    body = _multipart([(b'Content-Disposition: form-data; name="files"', GOOD)])
    response = api_env.post("/api/v1/batches", data=body, headers={"Content-Type": MULTIPART})
    _problem(response, 422, "without a filename")


def test_a_part_header_that_is_not_utf8_is_named_not_just_no_slides(api_env):
    body = _multipart(
        [(b'Content-Disposition: form-data; name="files"; filename="caf\xe9.jpg"', GOOD)]
    )
    response = api_env.post("/api/v1/batches", data=body, headers={"Content-Type": MULTIPART})
    _problem(response, 422, "no slides", "UTF-8")


def _many(count: int, **form) -> dict:
    return {"files": [(io.BytesIO(tiny_png()), f"{i}.png") for i in range(count)], **form}


def test_a_batch_of_the_most_files_allowed_with_a_reference_is_accepted(api_env):
    # 1000 files and a reference are 1001 parts, one over Flask's default MAX_FORM_PARTS.
    assert api_env.settings.max_files_per_batch == 1000
    response = api_env.post(
        "/api/v1/batches", data=_many(1000, reference="RUN-7"), content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.data[:400]
    assert len(response.get_json()["slide_ids"]) == 1000


def test_one_file_over_the_limit_names_the_setting(api_env):
    before = _stored(api_env)
    response = api_env.post("/api/v1/batches", data=_many(1001), content_type="multipart/form-data")
    _problem(response, 413, "BLOODCOUNT_MAX_FILES_PER_BATCH")
    assert _stored(api_env) == before


def test_a_reference_with_a_control_character_is_refused(api_env):
    before = _stored(api_env)
    response = api_env.submit({"a.jpg": GOOD}, reference="RUN\x1b[2J-7")
    body = _problem(response, 422, "reference", "control character")
    assert body["parameter"] == "reference"
    assert _stored(api_env) == before


def test_an_idempotency_key_with_nul_is_refused(api_env):
    before = _stored(api_env)
    response = api_env.submit({"a.jpg": GOOD}, **{"Idempotency-Key": "key\x00"})
    _problem(response, 422, "Idempotency-Key", "NUL")
    assert _stored(api_env) == before


# --- query parameters


@pytest.mark.parametrize(
    "query",
    ["_method=POST", "endpoint=x", "batch_id=x", "_external=1", "submitted_from=2026-01-01"],
)
def test_a_query_parameter_the_operation_does_not_take_is_a_422(api_env, query):
    """Unknown names are refused, not ignored: a report 'filtered' by a misspelt parameter
    would be every batch. (These names also broke or bent the next link when they were
    passed on to url_for.)"""
    batch = api_env.submit({"a.jpg": GOOD, "b.jpg": GOOD}).get_json()
    name = query.split("=")[0]
    for path in ("/api/v1/batches", f"/api/v1/batches/{batch['id']}/slides"):
        body = _problem(api_env.get(f"{path}?per_page=1&{query}"), 422, f"parameter {name!r};")
        assert body["parameter"] == name
    # Every unknown name is listed, with the names the operation takes.
    body = _problem(api_env.get(f"/api/v1/reports/counts?per_page=1&{query}"), 422)
    listed = ", ".join(repr(n) for n in sorted([name, "per_page"]))
    assert f"unknown query parameters {listed};" in body["detail"]
    assert body["detail"].endswith("takes format, from, to")


def test_the_next_link_carries_the_documented_query_as_text(api_env):
    api_env.submit({"a.jpg": GOOD}, reference="run 7 & co")
    api_env.submit({"b.jpg": GOOD}, reference="run 7 & co")
    query = "per_page=1&reference=run+7+%26+co&status=queued"
    response = api_env.get(f"/api/v1/batches?{query}")
    assert response.status_code == 200, response.data[:400]
    assert response.get_json()["next"] == f"/api/v1/batches?{query}&page=2"


@pytest.mark.parametrize(
    "query",
    [
        "from=9999-12-31T23:59:59-05:00",  # past year 9999 in UTC
        "to=0001-01-01T00:00:00%2B05:00",  # before year 1 in UTC
    ],
)
def test_a_date_out_of_range_in_utc_is_a_422(api_env, query):
    for path in ("/api/v1/batches", "/api/v1/reports/counts"):
        response = api_env.get(f"{path}?{query}")
        _problem(response, 422, "out of range")


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-02-01&to=2026-01-01",
        "from=2026-01-05&to=2026-01-05",
        "from=2026-01-05T10:00:00%2B02:00&to=2026-01-05T08:00:00Z",
    ],
)
def test_an_empty_or_swapped_date_range_is_a_422(api_env, query):
    """Not an empty list or an all-zero report that reads as 'nothing was submitted'."""
    for path in ("/api/v1/batches", "/api/v1/reports/counts", "/api/v1/reports/counts?format=csv"):
        sep = "&" if "?" in path else "?"
        body = _problem(api_env.get(f"{path}{sep}{query}"), 422, "must be before to", "exclusive")
        assert body["parameter"] == "to"
    ok = api_env.get("/api/v1/reports/counts?from=2026-01-05&to=2026-01-06")
    assert ok.status_code == 200
