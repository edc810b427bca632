"""Slide-level warnings: each rule fires on what it describes and stays quiet otherwise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from bloodcount.analysis import Analyzer
from bloodcount.schemas import SCHEMA_DIR
from bloodcount.slide_warnings import CODES, slide_warnings
from tests.servicekit import ROOT

NORMAL = {"RBC": 25, "WBC": 1, "Platelets": 2}


def _codes(counts=NORMAL, reviews=(False,) * 28, radius=20.0) -> list[str]:
    return [w["code"] for w in slide_warnings(counts, list(reviews), radius)]


def test_a_typical_smear_has_no_warnings():
    assert _codes() == []
    assert _codes(radius=None) == []  # a pipeline without a radius estimate


@pytest.mark.parametrize(
    ("radius", "flagged"),
    [(7.9, True), (8.0, False), (40.0, False), (160.0, False), (161.0, True), (1.0, True)],
)
def test_scale_out_of_range_at_the_canonical_scales_limits(radius, flagged):
    # Radius 16 px is canonical; resizing is bounded to x0.1..x2, so 8..160 px can be reached.
    assert ("scale_out_of_range" in _codes(radius=radius)) is flagged


def test_scale_message_names_the_measured_radius():
    (warning,) = slide_warnings(NORMAL, [False] * 28, 4.25)
    assert "4.2 px" in warning["message"] and "8-160 px" in warning["message"]


def test_red_and_white_cell_rules():
    assert _codes({"RBC": 0, "WBC": 0, "Platelets": 0}, ()) == ["no_red_cells"]
    # No red cells says it all: the white-cell rule does not repeat it.
    assert _codes({"RBC": 0, "WBC": 27, "Platelets": 0}, (False,) * 27) == ["no_red_cells"]
    assert _codes({"RBC": 3, "WBC": 3, "Platelets": 0}, (False,) * 6) == ["more_white_than_red"]
    assert _codes({"RBC": 4, "WBC": 3, "Platelets": 0}, (False,) * 7) == []


def test_mostly_uncertain_needs_half_the_cells_and_a_few_of_them():
    assert _codes(reviews=[True] * 14 + [False] * 14) == ["mostly_uncertain"]
    assert _codes(reviews=[True] * 13 + [False] * 15) == []
    few = {"RBC": 3, "WBC": 0, "Platelets": 0}
    assert _codes(few, reviews=[True] * 3) == []  # three cells cannot say "mostly"
    assert _codes({"RBC": 4, "WBC": 0, "Platelets": 0}, reviews=[True] * 4) == ["mostly_uncertain"]


def test_the_schema_and_the_api_document_list_exactly_the_codes():
    schema = json.loads((SCHEMA_DIR / "analysis-v1.json").read_text())
    warning = schema["$defs"]["slide"]["properties"]["warnings"]["items"]
    assert tuple(warning["properties"]["code"]["enum"]) == CODES
    api = yaml.safe_load((ROOT / "api" / "openapi.yaml").read_text())
    assert tuple(api["components"]["schemas"]["SlideWarning"]["properties"]["code"]["enum"]) == (
        CODES
    )


def test_the_analyzer_reports_them_and_errors_carry_none():
    analyzer = Analyzer(method="dense")
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    result = analyzer.analyze_image(noise, "noise")
    assert result.status == "ok" and result.counts["RBC"] == 0
    assert [w["code"] for w in result.to_dict()["warnings"]] == ["no_red_cells"]
    broken = analyzer.analyze_bytes(b"not an image", "broken")
    assert broken.status == "error" and broken.to_dict()["warnings"] == []


def _tiff(pages: list, reduced: tuple[int, ...] = ()) -> bytes:
    """A TIFF of ``pages`` (PIL images); pages at the indexes in ``reduced`` are marked as
    reduced-resolution copies (NewSubfileType bit 0), as a pyramid's levels are."""
    import io

    from PIL import TiffImagePlugin

    for index in reduced:
        info = TiffImagePlugin.ImageFileDirectory_v2()
        info[254] = 1
        pages[index].encoderinfo = {"tiffinfo": info}
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def test_a_tiff_of_several_fields_is_counted_from_its_first_with_a_warning():
    from PIL import Image

    from tests.synthetic import make_smear

    analyzer = Analyzer(method="dense")
    first, second = (Image.fromarray(make_smear(seed=s).image) for s in (1, 2))
    alone = analyzer.analyze_bytes(_tiff([first.copy()]), "one.tif")
    assert alone.status == "ok" and alone.warnings == []
    both = analyzer.analyze_bytes(_tiff([first.copy(), second]), "two.tif")
    assert both.counts == alone.counts  # the first field, as before
    assert [w["code"] for w in both.warnings] == ["extra_pages"]
    assert both.warnings[0]["message"].startswith("the file holds 2 full-size images")
    # A pyramid's smaller levels are the same field again: no warning.
    pyramid = _tiff([first.copy(), first.resize((320, 240)), first.resize((160, 120))], (1, 2))
    assert analyzer.analyze_bytes(pyramid, "pyramid.tif").warnings == []
