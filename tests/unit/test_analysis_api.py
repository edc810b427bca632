"""The Analyzer API and the JSON contract, with a colour test double in place of the model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bloodcount.analysis import SCHEMA, Analyzer
from bloodcount.config import load_settings
from bloodcount.schemas import validate
from bloodcount.vision.draw import CLASS_COLOURS, draw_overlay
from tests.synthetic import ColourClassifier, make_smear


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer(load_settings({}), classifier=ColourClassifier())


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image[:, :, ::-1])[1].tobytes()


def test_red_cells_are_counted_on_a_synthetic_slide(analyzer):
    errors = []
    for seed in range(4):
        smear = make_smear(seed)
        result = analyzer.analyze_bytes(_png(smear.image), f"s{seed}.png")
        assert result.status == "ok" and (result.width, result.height) == (640, 480)
        errors.append(abs(result.counts["RBC"] - smear.count("RBC")))
    assert np.mean(errors) <= 1.0


def test_result_follows_the_contract(analyzer):
    smear = make_smear(7)
    result = analyzer.analyze_bytes(_png(smear.image), "slide.png", overlay=True)
    slide = result.to_dict()
    validate({"schema": SCHEMA, "model": analyzer.model_info, "slides": [slide]})
    for label in ("RBC", "WBC", "Platelets"):
        assert slide["counts"][label] == sum(c["label"] == label for c in slide["cells"])
        framed = sum(c["label"] == label and c["frame"] for c in slide["cells"])
        assert slide["frame_counts"][label] == framed
    for cell in slide["cells"]:
        x0, y0, x1, y1 = cell["box"]
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
        assert abs(sum(cell["probabilities"].values()) - 1) < 1e-3
        assert cell["review"] == (cell["confidence"] < analyzer.settings.review_threshold)
        assert cell["edge"] == (x0 <= 1 or y0 <= 1 or x1 >= 639 or y1 >= 479)
        assert cell["frame"] == (x1 < 639 and y1 < 479)
    assert result.overlay.startswith(b"\xff\xd8\xff")


def test_bad_bytes_give_an_error_result_that_follows_the_contract(analyzer):
    result = analyzer.analyze_bytes(b"GIF89a not really", "bad.gif")
    assert result.status == "error" and result.error and result.cells == []
    validate({"schema": SCHEMA, "model": analyzer.model_info, "slides": [result.to_dict()]})


def test_seam_cells_are_counted_once_in_tiles():
    """A slide analysed whole and in 400 px tiles counts each red cell once."""
    smear = make_smear(11, width=1280, height=960, n_rbc=50, touching_pairs=4, n_platelets=4)
    whole = Analyzer(load_settings({}), classifier=ColourClassifier()).analyze_image(
        smear.image, "x"
    )
    tiled = Analyzer(load_settings({}, tile_size=400), classifier=ColourClassifier()).analyze_image(
        smear.image, "x"
    )
    # 12 tiles with ~20 red cells on their seams: counting seam cells twice (or
    # dropping them) would miss the truth by far more than the proposal noise allowed here.
    assert len(whole.cells) > 0
    for result in (whole, tiled):
        assert abs(result.counts["RBC"] - smear.count("RBC")) <= 3


def test_overlay_uses_the_class_colours():
    image = np.full((60, 60, 3), 255, np.uint8)
    cell = {"label": "WBC", "box": [10, 10, 50, 50], "review": False}
    drawn = cv2.imdecode(np.frombuffer(draw_overlay(image, [cell]), np.uint8), cv2.IMREAD_COLOR)
    r, g, b = (int(CLASS_COLOURS["WBC"][i : i + 2], 16) for i in (1, 3, 5))
    # JPEG shifts colours a little; the line must still be the class colour, not another.
    assert np.abs(drawn[10, 30].astype(int) - (b, g, r)).max() <= 12


def test_overlay_classes_differ_by_line_as_well_as_colour():
    """Red cells solid, white cells dashed, platelets dotted: told apart without colour."""
    image = np.full((120, 360, 3), 255, np.uint8)
    cells = [
        {"label": label, "box": [10 + 120 * i, 10, 110 + 120 * i, 110], "review": False}
        for i, label in enumerate(("RBC", "WBC", "Platelets"))
    ]
    drawn = cv2.imdecode(np.frombuffer(draw_overlay(image, cells), np.uint8), cv2.IMREAD_GRAYSCALE)
    # Along each box's top edge (inside its corners): how much of it is glass (white).
    gaps = [float((drawn[10, 20 + 120 * i : 100 + 120 * i] > 200).mean()) for i in range(3)]
    assert gaps[0] == 0 and 0.15 < gaps[1] < 0.45 and gaps[2] > gaps[1], gaps


def test_default_analyzer_runs_the_shipped_detector():
    from bloodcount.vision.dense_detector import DenseDetector

    analyzer = Analyzer(load_settings({}))
    assert analyzer.method == "dense" and analyzer.classifier is None
    assert analyzer.model_info == DenseDetector.load().info
    result = analyzer.analyze_bytes(_png(make_smear(3).image), "s.png")
    assert result.status == "ok" and set(result.timings) >= {"decode", "scale", "detect"}
    validate({"schema": SCHEMA, "model": analyzer.model_info, "slides": [result.to_dict()]})


def test_a_classifier_alone_selects_the_classical_pipeline_and_bad_methods_are_refused():
    assert Analyzer(load_settings({}), classifier=ColourClassifier()).method == "classical"
    with pytest.raises(ValueError, match="unknown analysis method"):
        Analyzer(load_settings({}), method="magic")


def test_a_file_over_the_upload_limit_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    image = _png(make_smear(3).image)
    small = Analyzer(
        load_settings({"BLOODCOUNT_MAX_UPLOAD_BYTES": str(len(image) - 1)}),
        classifier=ColourClassifier(),
    )
    path = tmp_path / "scan.png"
    path.write_bytes(image)
    asked = []
    real_open = open

    class Watched:
        # Records how many bytes analyze_path asks for: never the whole file.
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def read(self, size=-1):
            asked.append(size)
            return self.stream.read(size)

    monkeypatch.setattr("builtins.open", lambda *a, **k: Watched(real_open(*a, **k)))
    result = small.analyze_path(path)
    monkeypatch.undo()
    assert result.status == "error" and result.cells == []
    assert f"{len(image) - 1:,} bytes (BLOODCOUNT_MAX_UPLOAD_BYTES)" in result.error
    assert asked == [len(image)]
    at_limit = Analyzer(
        load_settings({"BLOODCOUNT_MAX_UPLOAD_BYTES": str(len(image))}),
        classifier=ColourClassifier(),
    )
    assert at_limit.analyze_path(path).status == "ok"
