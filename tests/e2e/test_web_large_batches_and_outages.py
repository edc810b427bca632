"""The batch pages when the batch is large or the API stumbles, in a real browser.

The API's answers are stood in for with Playwright routes (a batch of 600 slides, a 503
in the middle of a run), so these tests need no worker time; the pages, their scripts
and the sign-in are the running service's own.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.slow]

CLASSES = ("RBC", "WBC", "Platelets")


def _batch_page(web_service, browser_context, batch_id: str, answer, problems: list[str]):
    """A signed-in page on the batch's page, its API calls for batches answered by ``answer``."""
    page = sign_in(browser_context, web_service.base_url, web_service.api_key, problems)
    page.route("**/api/v1/batches/**", answer)
    page.goto(f"{web_service.base_url}/batches/{batch_id}")
    return page


def _batch(batch_id: str, total: int, done: int, status: str | None = None) -> dict:
    status = status or ("done" if done >= total else "processing")
    counts = {"RBC": done, "WBC": 0, "Platelets": 0}
    return {
        "id": batch_id,
        "reference": batch_id.upper(),
        "status": status,
        "progress": {"total": total, "done": done, "failed": 0},
        "totals": counts,
        "frame_totals": counts,
        "slides_with_warnings": 0,
    }


def _slides_page(url: str, total: int, done: int) -> dict:
    query = parse_qs(urlparse(url).query)
    number, per_page = int(query["page"][0]), int(query["per_page"][0])
    first = (number - 1) * per_page
    items = [
        {
            "id": f"slide-{i:04d}",
            "file": f"slide_{i:04d}.jpg",
            "status": "done" if i < done else "queued",
            "counts": {"RBC": 1, "WBC": 0, "Platelets": 0} if i < done else None,
            "warnings": [],
        }
        for i in range(first, min(total, first + per_page))
    ]
    more = first + per_page < total
    return {
        "items": items,
        "page": number,
        "per_page": per_page,
        "total": total,
        "next": "more" if more else None,
    }


def test_a_large_batch_is_shown_a_page_at_a_time_and_keeps_the_keyboard_focus(
    web_service, browser_context
):
    """600 slides, finishing 50 a poll: the table and chart show 50 at a time with a
    pager, and a slide link someone has tabbed to stays focused while the page polls."""
    total, batch_id = 600, "large-batch"
    state = {"polls": 0}
    slide_requests: list[str] = []

    def done() -> int:
        return min(total, state["polls"] * 50)

    def answer(route):
        url = route.request.url
        if urlparse(url).path.endswith(f"/batches/{batch_id}"):
            state["polls"] += 1
            return route.fulfill(
                json=_batch(batch_id, total, done()),
                headers={"Retry-After": "1", "ETag": f'"{state["polls"]}"'},
            )
        if f"/batches/{batch_id}/slides" in url:
            slide_requests.append(urlparse(url).query)
            return route.fulfill(json=_slides_page(url, total, done()))
        return route.continue_()

    problems: list[str] = []
    page = _batch_page(web_service, browser_context, batch_id, answer, problems)
    info = page.locator("#slides-page-info")
    info.filter(has_text="Slides 1–50 of 600").wait_for()
    assert page.locator("#slides-body tr").count() == 50

    # Tab to a slide link while the batch runs: the polls re-render the table under it.
    link = page.get_by_role("link", name="slide_0003.jpg")
    link.focus()
    page.evaluate("document.querySelector('#slides-body a').dataset.before = 'yes'")
    page.wait_for_function("() => !document.querySelector('#slides-body a').dataset.before")
    assert page.evaluate("document.activeElement.textContent") == "slide_0003.jpg"

    page.locator("#batch-status").filter(has_text="done").wait_for(timeout=60_000)
    assert page.locator("#slides-body tr").count() == 50
    assert page.locator("#counts-chart svg rect").count() == 50 * len(CLASSES)
    page.get_by_role("navigation", name="Pages of slides").get_by_role(
        "button", name="Next"
    ).click()
    info.filter(has_text="Slides 51–100 of 600").wait_for()
    assert page.locator("#slides-body tr td a").first.inner_text() == "slide_0050.jpg"
    # Only the page on screen is fetched, once per change of progress and once for Next:
    # a lab watching large batches stays far below its key's rate limit.
    assert set(slide_requests[:-1]) == {"page=1&per_page=50"}, slide_requests
    assert slide_requests[-1] == "page=2&per_page=50"
    assert len(slide_requests) <= state["polls"] + 1
    assert problems == []


def test_the_batch_page_recovers_from_a_503_and_says_so(web_service, browser_context):
    """A poll answered 503, then the slides' list answered 503 once the batch is done:
    the page says it is trying again, tries again, shows the finished slides, and the
    message goes once the service answers."""
    batch_id = "stumbling-batch"
    state = {"polls": 0, "slides": 0}
    unavailable = {
        "status": 503,
        "body": json.dumps({"title": "Service Unavailable", "detail": "the database is down"}),
        "headers": {"Retry-After": "1", "Content-Type": "application/problem+json"},
    }

    def answer(route):
        url = route.request.url
        if urlparse(url).path.endswith(f"/batches/{batch_id}"):
            state["polls"] += 1
            if state["polls"] == 2:
                return route.fulfill(**unavailable)
            finished = state["polls"] >= 3
            return route.fulfill(
                json=_batch(batch_id, 1, 1 if finished else 0),
                headers={"Retry-After": "1", "ETag": f'"{int(finished)}"'},
            )
        if f"/batches/{batch_id}/slides" in url:
            state["slides"] += 1
            if state["slides"] == 2:  # the first fetch after the batch finished
                return route.fulfill(**unavailable)
            return route.fulfill(json=_slides_page(url, 1, 1 if state["polls"] >= 3 else 0))
        return route.continue_()

    problems: list[str] = []
    page = _batch_page(web_service, browser_context, batch_id, answer, problems)
    messages = page.locator("#messages")
    messages.filter(has_text="the database is down").wait_for()
    # The slide shows as counted once the slides' list answers again.
    row = page.locator("#slides-body tr").first
    row.filter(has_text="done").wait_for(timeout=30_000)
    assert row.locator("td").nth(2).inner_text() == "1"
    page.wait_for_function("() => !document.querySelector('#messages').textContent")
    assert page.locator("#batch-status").inner_text() == "done"
    assert problems == []


def test_the_batches_list_keeps_trying_after_a_503(web_service, browser_context):
    """The batches list answered 503 once: it says so, tries again by itself, and the
    message goes when the list comes."""
    state = {"calls": 0}

    def answer(route):
        if urlparse(route.request.url).path.endswith("/api/v1/batches"):
            state["calls"] += 1
            if state["calls"] == 1:
                return route.fulfill(
                    status=503,
                    body=json.dumps({"title": "Service Unavailable", "detail": "restarting"}),
                    headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
                )
            return route.fulfill(
                json={
                    "items": [
                        {**_batch("listed-batch", 1, 1), "created_at": "2026-01-31T08:00:00Z"}
                    ],
                    "page": 1,
                    "per_page": 25,
                    "total": 1,
                    "next": None,
                }
            )
        return route.continue_()

    problems: list[str] = []
    page = sign_in(browser_context, web_service.base_url, web_service.api_key, problems)
    page.route(re.compile(r".*/api/v1/batches\?.*"), answer)
    page.reload()
    page.locator("#messages").filter(has_text="restarting").wait_for()
    page.get_by_role("link", name="LISTED-BATCH").wait_for(timeout=30_000)
    page.wait_for_function("() => !document.querySelector('#messages').textContent")
    assert problems == []
