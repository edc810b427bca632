"""What a lab needs from the pages beyond a mouse and full colour vision, in a real
browser: keyboard focus that shows, and cell classes told apart by more than colour."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.slow]

CLASSES = ("RBC", "WBC", "Platelets")


def test_the_file_chooser_shows_where_the_keyboard_focus_is(web_service, browser_context):
    """The file input is visually hidden behind its "Choose files…" label: tabbing to it
    must draw the focus ring on the label, or the focus vanishes from the screen."""
    page = sign_in(browser_context, web_service.base_url, web_service.api_key)
    page.goto(web_service.base_url + "/submit")
    page.get_by_label("Client reference").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "files"
    ring = page.evaluate(
        """() => {
            const style = getComputedStyle(document.querySelector('label[for=files]'));
            return [style.outlineStyle, parseFloat(style.outlineWidth)];
        }"""
    )
    assert ring[0] != "none" and ring[1] >= 2


def test_cell_classes_differ_by_line_as_well_as_colour(web_service, browser_context):
    """On the slide, each class's boxes have their own line (solid, dashed, dotted) and
    the legend's swatches show the same, so a reader who cannot tell the red RBC boxes
    from the green platelet boxes still can. The slide is stood in for by a route."""
    import cv2
    import numpy as np

    slide_id = "patterned-slide"
    png = cv2.imencode(".png", np.full((100, 150, 3), 230, np.uint8))[1].tobytes()
    cells = [
        {
            "label": name,
            "box": [10 + 45 * k, 10, 40 + 45 * k, 40],
            "confidence": 0.9,
            "probabilities": {c: 0.9 if c == name else 0.05 for c in CLASSES},
            "review": False,
            "edge": False,
        }
        for k, name in enumerate(CLASSES)
    ]
    slide = {
        "id": slide_id,
        "file": "patterned.png",
        "status": "done",
        "width": 150,
        "height": 100,
        "has_display": True,
        "cells": cells,
        "counts": {c: 1 for c in CLASSES},
        "frame_counts": {c: 1 for c in CLASSES},
        "warnings": [],
        "model": {},
    }

    def answer(route):
        if route.request.url.endswith("/display"):
            return route.fulfill(body=png, content_type="image/png")
        return route.fulfill(json=slide)

    page = sign_in(browser_context, web_service.base_url, web_service.api_key)
    page.route(f"**/api/v1/slides/{slide_id}**", answer)
    page.goto(f"{web_service.base_url}/slides/{slide_id}")
    page.locator("#figure svg image").wait_for()
    dashes = page.evaluate(
        """classes => classes.map(name => getComputedStyle(
            document.querySelector(`g.class-${name} rect.cell-box`)).strokeDasharray)""",
        list(CLASSES),
    )
    assert len(set(dashes)) == len(CLASSES), dashes
    swatches = page.evaluate(
        """classes => classes.map(name => getComputedStyle(
            document.querySelector(`.toggles .swatch.class-${name}`)).borderTopStyle)""",
        list(CLASSES),
    )
    assert len(set(swatches)) == len(CLASSES), swatches
