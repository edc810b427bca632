"""CSV reports never hand a spreadsheet a formula taken from a lab's file name or reference."""

from __future__ import annotations

import csv
import io

import pytest

from tests.servicekit import open_api_env, smear_bytes


@pytest.fixture
def api_env(tmp_path):
    yield from open_api_env(tmp_path)


@pytest.mark.parametrize("name", ["=HYPERLINK(1).jpg", "+1+cmd.jpg", "-2.jpg", "@SUM(A1).jpg"])
def test_formula_like_names_and_references_arrive_as_text(api_env, name):
    body = api_env.submit(
        {name: smear_bytes(2, width=200, height=200)}, reference="=1+1"
    ).get_json()
    for path in (f"/api/v1/batches/{body['id']}/report.csv", "/api/v1/reports/counts?format=csv"):
        rows = list(csv.DictReader(io.StringIO(api_env.get(path).data.decode())))
        assert rows[-1]["reference"] == "'=1+1"
        if "file" in rows[-1]:
            assert rows[-1]["file"] == "'" + name
    # JSON is not a spreadsheet: it keeps the values as given.
    report = api_env.get(f"/api/v1/batches/{body['id']}/report.json").get_json()
    assert report["slides"][0]["file"] == name and report["batch"]["reference"] == "=1+1"
