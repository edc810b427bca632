"""Slide-level warnings: a counted slide whose counts should not be trusted without a look.

The detector always answers, even for an image that is not a smear it can read (a photo of
something else, a slide imaged at a magnification it cannot bring to its working scale,
a sliver cut from a larger image). These checks say so beside the counts instead of
failing the slide: an unusual smear is still counted, and the lab decides.

Each check is a plain rule on the result, none tuned: on the 1,405 real smears of
``../shared/data`` (TXL-PBC 824, BCCD 292, CBC 289) detectors 1.6.0 and 1.7.0 trigger none of them
(``bloodcount analyze ../shared/data/txl-pbc/train/images ../shared/data/bccd/JPEGImages
../shared/data/cbc --output all.json``), while random noise, a blank field, a sliver of a
slide and a smear shrunk to a tenth or blown up eight times each trigger one
(tests/unit/test_slide_warnings.py, tests/integration/test_analysis_dense.py).
One more comes from the file rather than the result: ``extra_pages``, a TIFF holding more
full-size images than the first, which alone is counted (:func:`page_warnings`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bloodcount.vision.canonical import CANONICAL_RADIUS, MAX_FACTOR, MIN_FACTOR, radius_in_range

# Every code a slide can carry, in the order they are reported.
CODES = (
    "scale_out_of_range",
    "no_red_cells",
    "more_white_than_red",
    "mostly_uncertain",
    "extra_pages",
)
# "mostly_uncertain": at least this share of the cells (and this many) flagged for review;
# the most on a real smear is 0.29, in the survey above.
UNCERTAIN_SHARE = 0.5
UNCERTAIN_MIN_CELLS = 4


def slide_warnings(
    counts: Mapping[str, int], reviews: Sequence[bool], radius: float | None
) -> list[dict[str, str]]:
    """``[{"code", "message"}]`` for a counted slide; empty when nothing looks wrong.

    ``reviews`` holds each cell's review flag; ``radius`` is the red-cell radius (px) the
    slide was analysed at, None when the pipeline did not estimate one.
    """
    found: list[dict[str, Any]] = []
    if radius is not None and not radius_in_range(radius):
        lo, hi = CANONICAL_RADIUS / MAX_FACTOR, CANONICAL_RADIUS / MIN_FACTOR
        found.append(
            _warning(
                "scale_out_of_range",
                f"red cells measured {radius:.1f} px in radius, outside the {lo:.0f}-{hi:.0f} px "
                "the detector can bring to its working scale: the magnification or the image "
                "size is not one it can count",
            )
        )
    rbc, wbc = counts.get("RBC", 0), counts.get("WBC", 0)
    if rbc == 0:
        found.append(
            _warning(
                "no_red_cells",
                "no red cells found: a peripheral smear in focus always shows some",
            )
        )
    elif wbc >= rbc:
        found.append(
            _warning(
                "more_white_than_red",
                f"{wbc} white cells for {rbc} red: not what a peripheral smear looks like "
                "to this detector",
            )
        )
    flagged = sum(bool(r) for r in reviews)
    if len(reviews) >= UNCERTAIN_MIN_CELLS and flagged >= UNCERTAIN_SHARE * len(reviews):
        found.append(
            _warning(
                "mostly_uncertain",
                f"{flagged} of {len(reviews)} cells have an uncertain class",
            )
        )
    return found


def page_warnings(extra: int) -> list[dict[str, str]]:
    """The warning for a file holding more images than the one counted (a multi-page TIFF of
    several fields): counting only the first silently would lose the rest of the slide."""
    if extra <= 0:
        return []
    return [
        _warning(
            "extra_pages",
            f"the file holds {extra + 1} full-size images and only the first was counted: "
            "submit each field as a file of its own",
        )
    ]


def _warning(code: str, message: str) -> dict[str, str]:
    assert code in CODES, code
    return {"code": code, "message": message}
