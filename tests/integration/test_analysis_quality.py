"""Quality floors on a fixed subset of real held-out slides (no wall-clock assertions).

The first 15 test-side slides of each TXL-PBC source, scored against its complete labels:
* the default (dense) pipeline: detection F1 per class with the evaluation's own matching
  (one-to-one, IoU >= 0.5) and the per-slide red-cell count error;
* the classical proposal stage, class-agnostically: the share of true cells of each class
  that some proposal covers at IoU >= 0.5.
Floors sit a little below the figures measured when they were set (noted beside them).
"""

from __future__ import annotations

import numpy as np
import pytest

from bloodcount.analysis import Analyzer
from bloodcount.config import load_settings
from bloodcount.evaluation import score_slide, summarise
from bloodcount.vision.decode import decode_image
from bloodcount.vision.geometry import iou_matrix
from bloodcount.vision.proposals import find_cells

# source -> class -> proposal-recall floor.
FLOORS = {
    # measured 2026-11-26: bccd RBC .727 WBC .938 Plt .381; pbc RBC .684 WBC 1.0 Plt 1.0;
    # raabin RBC .771 WBC .933
    "txl-bccd": {"RBC": 0.68, "WBC": 0.88, "Platelets": 0.30},
    "txl-pbc": {"RBC": 0.64, "WBC": 0.93, "Platelets": 0.85},
    "txl-raabin": {"RBC": 0.72, "WBC": 0.88},
}

# source -> class -> F1 floor of the shipped detector. Measured with 1.0.0 (sha256
# 585cbc4dc853): bccd RBC .882 WBC 1.0 Plt .70 (21 platelets); pbc RBC .964 WBC 1.0
# Plt .941 (9); raabin RBC .856 WBC .867 (2 of 15 missed; no platelets in this subset).
DENSE_FLOORS = {
    "txl-bccd": {"RBC": 0.85, "WBC": 0.93, "Platelets": 0.55},
    "txl-pbc": {"RBC": 0.93, "WBC": 0.93, "Platelets": 0.80},
    "txl-raabin": {"RBC": 0.82, "WBC": 0.80},
}
# Per-slide RBC count error ceiling (mean absolute), same subset; measured 2.33 / 0.93 / 2.40.
MAE_CEILINGS = {"txl-bccd": 3.0, "txl-pbc": 1.5, "txl-raabin": 3.0}


def proposal_recall(records) -> dict[str, float]:
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    for record in records:
        image = decode_image(record.image_path.read_bytes(), 10**8)
        found = find_cells(image).boxes
        truth = np.array([b.xyxy for b in record.boxes]).reshape(-1, 4)
        best = iou_matrix(truth, found).max(axis=1) if len(found) else np.zeros(len(truth))
        for box, score in zip(record.boxes, best, strict=True):
            totals[box.label] = totals.get(box.label, 0) + 1
            hits[box.label] = hits.get(box.label, 0) + int(score >= 0.5)
    return {label: hits[label] / totals[label] for label in totals}


@pytest.fixture(scope="module")
def held_out(data_dir):
    split = pytest.importorskip("training.split")
    from training.datasets import read_labels

    test_side = {e["sha256"] for e in split.load_split()["images"] if e["side"] == "test"}
    from training.datasets import file_sha256

    txl = data_dir / "txl-pbc" / "train"
    records = [
        r
        for r in read_labels("yolo", txl / "labels", txl / "images")
        if file_sha256(r.image_path) in test_side
    ]
    return {src: [r for r in records if r.source == src][:15] for src in FLOORS}


@pytest.mark.parametrize("source", sorted(FLOORS))
def test_proposal_recall_floors(held_out, source):
    recall = proposal_recall(held_out[source])
    for label, floor in FLOORS[source].items():
        assert recall[label] >= floor, f"{source} {label} recall {recall[label]:.3f} < {floor}"


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer(load_settings({}))


@pytest.mark.parametrize("source", sorted(DENSE_FLOORS))
def test_dense_detection_floors(held_out, analyzer, source):
    assert analyzer.method == "dense"
    scores = []
    for record in held_out[source]:
        result = analyzer.analyze_path(record.image_path)
        assert result.status == "ok"
        truth = [(b.xyxy, b.label) for b in record.boxes]
        scores.append(score_slide(str(record.image_path), source, result.to_dict()["cells"], truth))
    summary = summarise(scores)["classes"]
    measured = {c: round(m["f1"], 3) for c, m in summary.items()}
    for label, floor in DENSE_FLOORS[source].items():
        assert summary[label]["f1"] >= floor, (
            f"{source} {label} F1 {measured[label]} < {floor}: {measured}"
        )
    assert summary["RBC"]["mae_per_slide"] <= MAE_CEILINGS[source]


def _scores_at(records, analyzer, source: str, factor: float) -> dict:
    """Per-class summary of the slides resized by ``factor``, against their scaled boxes."""
    import cv2

    scores = []
    for record in records:
        image = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
        if factor != 1:
            size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
            interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
            image = cv2.resize(image, size, interpolation=interp)
        result = analyzer.analyze_bytes(cv2.imencode(".png", image)[1].tobytes(), "x.png")
        assert result.status == "ok"
        truth = [(tuple(v * factor for v in b.xyxy), b.label) for b in record.boxes]
        scores.append(score_slide(record.image_path.name, source, result.to_dict()["cells"], truth))
    return summarise(scores)["classes"]


# How much worse the same slides may count at another magnification. Measured on the
# subset below with 1.6.0 (F1 at x1 / x0.5 / x2): bccd RBC .935/.929/.941, WBC 1/1/1;
# raabin RBC .901/.898/.921, WBC .933/.867/.933 (x0.5 misses one of 15 white cells).
# With 1.7.0 raabin RBC is .919/.892 at x1/x0.5 on these 15 slides, where the whole test
# side (53 Raabin slides, training.detector.robustness) gives .945/.937, so the allowance
# is 0.03. With scale_factor pinned to each source's usual value all four cases still fail
# (RBC F1 drops .031-.060, and white cells are lost: F1 .93 -> .69-.77, 1.0 -> .65).
MAGNIFICATION_RBC_DROP = 0.03
MAGNIFICATION_WBC_LOST = 1


@pytest.mark.parametrize("factor", [0.5, 2.0])
@pytest.mark.parametrize("source", ["txl-bccd", "txl-raabin"])
def test_counting_holds_at_another_magnification(held_out, analyzer, source, factor):
    """The held-out slides resized (a lower or higher power through the same slide): the
    red-cell size estimate brings them back to the canonical scale, so red cells are found
    about as well as at the original size, and white cells with at most one lost. A scale
    estimate gone wrong would cost far more (``training.detector.robustness`` measures
    the whole held-out side from x0.4 to x2.5)."""
    base = _scores_at(held_out[source], analyzer, source, 1.0)
    resized = _scores_at(held_out[source], analyzer, source, factor)
    measured = {c: (round(base[c]["f1"], 3), round(resized[c]["f1"], 3)) for c in base}
    assert resized["RBC"]["f1"] >= base["RBC"]["f1"] - MAGNIFICATION_RBC_DROP, measured
    assert resized["RBC"]["f1"] >= DENSE_FLOORS[source]["RBC"], measured
    assert resized["WBC"]["matched"] >= base["WBC"]["matched"] - MAGNIFICATION_WBC_LOST, measured
