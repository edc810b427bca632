"""Lab-chosen names on the pages: a 180-character file name and a long reference with
no space in them wrap instead of stretching the page sideways, and markup in them is
shown as text. The API's answers are stood in for with Playwright routes."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.slow]

LONG_FILE = "A" * 180 + ".jpg"
LONG_REFERENCE = "<b>REF</b>" + "R" * 190


def test_long_names_wrap_inside_the_window(web_service, browser_context):
    batch_id = "long-names"
    batch = {
        "id": batch_id,
        "reference": LONG_REFERENCE,
        "status": "done",
        "progress": {"total": 1, "done": 1, "failed": 0},
        "totals": {"RBC": 3, "WBC": 0, "Platelets": 0},
        "frame_totals": {"RBC": 3, "WBC": 0, "Platelets": 0},
        "created_at": "2026-01-31T08:00:00Z",
    }
    slides = {
        "items": [
            {
                "id": "s1",
                "file": LONG_FILE,
                "status": "done",
                "counts": {"RBC": 3, "WBC": 0, "Platelets": 0},
                "warnings": [],
            }
        ],
        "page": 1,
        "per_page": 200,
        "total": 1,
        "next": None,
    }
    listing = {"items": [batch], "page": 1, "per_page": 25, "total": 1, "next": None}

    def answer(route):
        path = urlparse(route.request.url).path
        if path.endswith("/slides"):
            return route.fulfill(json=slides)
        if path.endswith(f"/batches/{batch_id}"):
            return route.fulfill(json=batch)
        return route.fulfill(json=listing)

    page = sign_in(browser_context, web_service.base_url, web_service.api_key)
    page.route(re.compile(r".*/api/v1/batches.*"), answer)

    def overflow() -> int:
        return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")

    page.reload()
    page.get_by_role("link", name=LONG_REFERENCE).wait_for()
    assert overflow() <= 0

    page.goto(f"{web_service.base_url}/batches/{batch_id}")
    page.get_by_role("link", name=LONG_FILE).wait_for()
    assert page.locator("#batch-reference").inner_text() == LONG_REFERENCE
    assert page.locator("#batch-reference b").count() == 0
    assert overflow() <= 0
