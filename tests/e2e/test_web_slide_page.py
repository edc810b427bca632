"""The slide page of a slide whose image the browser cannot show yet (a TIFF before its
analysis), in a real browser; the API's answer is stubbed, the page and its script are real."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("status", ["queued", "failed"])
def test_a_tiff_slide_not_yet_analysed_says_when_its_image_comes(
    web_service, browser_context, status
):
    """A TIFF gets a browser copy when it is analysed: while it waits the page says so
    calmly; only a failed one is an error."""
    page = sign_in(browser_context, web_service.base_url, web_service.api_key)
    slide = {
        "id": "slide-1",
        "batch_id": "batch-1",
        "file": "smear.tif",
        "status": status,
        "error": "not an image" if status == "failed" else None,
        "has_display": False,
        "counts": None,
        "cells": [],
        "warnings": [],
    }
    page.route("**/api/v1/slides/slide-1", lambda route: route.fulfill(json=slide))
    page.goto(web_service.base_url + "/slides/slide-1")
    expected = (
        "appears here once the slide is analysed" if status == "queued" else "cannot be shown"
    )
    note = page.locator("#figure p", has_text=expected)
    note.wait_for()
    is_error = "error" in (note.get_attribute("class") or "").split()
    assert is_error == (status == "failed")
