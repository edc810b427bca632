"""Overlay images: the slide with a class-coloured box around every cell."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np

from bloodcount.vision import CLASS_COLOURS, CLASS_LINES, REVIEW_COLOUR

OVERLAY_QUALITY = 92


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """``#rrggbb`` to an (r, g, b) tuple."""
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _field(cell: Any, name: str) -> Any:
    return cell[name] if isinstance(cell, dict) else getattr(cell, name)


def draw_overlay(image: np.ndarray, cells: Iterable[Any]) -> bytes:
    """JPEG bytes of the RGB ``image`` with each cell's box in its class colour.

    ``cells`` are :class:`bloodcount.analysis.Cell` objects or their dicts; cells flagged
    for review get a dashed-looking second outline in amber so a reviewer finds them.
    """
    # OpenCV draws and encodes BGR; cvtColor makes that copy in 0.07 ms for a 640x480 slide,
    # where numpy's strided copy took 2.3 ms (a visible share of a worker's time per slide).
    canvas = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    thickness = max(1, round(min(image.shape[:2]) / 320))
    for cell in cells:
        x0, y0, x1, y1 = (int(round(v)) for v in _field(cell, "box"))
        label = _field(cell, "label")
        r, g, b = hex_to_rgb(CLASS_COLOURS[label])
        _box(canvas, (x0, y0), (x1, y1), (b, g, r), thickness, CLASS_LINES[label][1])
        if _field(cell, "review"):
            r, g, b = hex_to_rgb(REVIEW_COLOUR)
            pad = thickness + 1
            cv2.rectangle(canvas, (x0 + pad, y0 + pad), (x1 - pad, y1 - pad), (b, g, r), 1)
    return _jpeg(canvas)


def _box(canvas, top_left, bottom_right, colour, thickness: int, dash) -> None:
    """A rectangle, solid, or dashed as ``dash`` = (on, off) in line widths says: the
    class's line of CLASS_LINES, so classes differ by more than colour."""
    if dash is None:
        cv2.rectangle(canvas, top_left, bottom_right, colour, thickness)
        return
    on, off = (max(1, round(v * thickness)) for v in dash)
    (x0, y0), (x1, y1) = top_left, bottom_right
    corners = ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))
    for (ax, ay), (bx, by) in zip(corners, corners[1:], strict=False):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, length + 1, on + off):
            end = min(start + on - 1, length)
            p = (ax + (bx - ax) * start // max(length, 1), ay + (by - ay) * start // max(length, 1))
            q = (ax + (bx - ax) * end // max(length, 1), ay + (by - ay) * end // max(length, 1))
            cv2.line(canvas, p, q, colour, thickness)


def encode_display(image: np.ndarray) -> bytes:
    """JPEG bytes of the RGB ``image`` as analysed (decoded, oriented, 8-bit), no boxes.

    For slides whose original a browser cannot show (TIFF): the web page draws its own
    boxes over this, in the same pixel coordinates as the cells.
    """
    return _jpeg(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))


def _jpeg(canvas: np.ndarray) -> bytes:
    # JPEG, not PNG: encoding a 640x480 overlay takes 0.6 ms instead of 14-28 ms, which
    # would otherwise double the CPU cost of a slide; the overlay is for looking at.
    # Full-resolution colour (4:4:4), so one-pixel box lines keep their class colour.
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        OVERLAY_QUALITY,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    ok, jpeg = cv2.imencode(".jpg", canvas, params)
    if not ok:  # pragma: no cover - encoding an in-memory uint8 image does not fail
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes()
