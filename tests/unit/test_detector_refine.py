"""The dense pipeline's scale check: a wrong radius estimate is corrected by one more pass."""

from __future__ import annotations

import numpy as np
import pytest

import bloodcount.vision.detect_dense as detect_dense
from bloodcount.vision.canonical import CANONICAL_RBC_SIZE, RBC_SIDE_PER_RADIUS
from bloodcount.vision.dense_detector import Peaks

TRUE_RADIUS = 40.0
TRUE_SIDE = RBC_SIDE_PER_RADIUS * TRUE_RADIUS  # red-cell side in original pixels


class _GridOfRedCells:
    """Stands in for DenseDetector: six red cells of the true size, seen at whatever scale."""

    thresholds = np.array([0.3, 0.3, 0.3], np.float32)
    canonical_rbc_size = CANONICAL_RBC_SIZE
    inference_scale = 1.0
    nms_iou = None

    def __init__(self) -> None:
        self.factors: list[float] = []
        self.true_side = TRUE_SIDE

    def find(self, image: np.ndarray, thresholds=None) -> Peaks:
        f = self.factors[-1]
        side = self.true_side * f
        centres = [((100 + 150 * i) * f, (120 + 200 * j) * f) for i in range(3) for j in range(2)]
        boxes = np.array(
            [[x - side / 2, y - side / 2, x + side / 2, y + side / 2] for x, y in centres]
        )
        n = len(boxes)
        return Peaks(
            boxes, np.zeros(n, np.int64), np.tile([0.9, 0.05, 0.05], (n, 1)), np.full(n, 0.9)
        )


@pytest.fixture
def fake(monkeypatch):
    net = _GridOfRedCells()
    real_resize, real_canonical = detect_dense.resize, detect_dense.to_canonical

    def spy_resize(image, factor):
        net.factors.append(factor)  # a shrinking slide is resampled once per pass
        return real_resize(image, factor)

    def spy_canonical(image, radius=None):
        canon = real_canonical(image, radius)  # a growing one tile by tile
        net.factors.append(canon.factor)
        return canon

    monkeypatch.setattr(detect_dense, "resize", spy_resize)
    monkeypatch.setattr(detect_dense, "to_canonical", spy_canonical)
    return net


def test_a_radius_estimate_off_by_two_is_corrected(fake):
    image = np.full((480, 640, 3), 220, np.uint8)
    found = detect_dense.detect_cells_dense(image, fake, radius=TRUE_RADIUS / 2)
    assert fake.factors == pytest.approx([16 / 20, 16 / 40])
    sides = np.sqrt(np.prod(found.boxes[:, 2:] - found.boxes[:, :2], axis=1))
    assert len(found.boxes) == 6 and sides == pytest.approx(TRUE_SIDE)


def test_a_right_estimate_costs_one_pass_and_refine_zero_never_rescales(fake):
    image = np.full((480, 640, 3), 220, np.uint8)
    detect_dense.detect_cells_dense(image, fake, radius=TRUE_RADIUS)
    assert len(fake.factors) == 1
    fake.factors.clear()
    detect_dense.detect_cells_dense(image, fake, radius=TRUE_RADIUS / 2, refine=0)
    assert len(fake.factors) == 1


def test_a_slide_with_small_cells_is_enlarged_and_mapped_back(fake):
    fake.true_side = RBC_SIDE_PER_RADIUS * 10.0
    found = detect_dense.detect_cells_dense(
        np.full((480, 640, 3), 220, np.uint8), fake, radius=10.0
    )
    assert fake.factors == pytest.approx([1.6])
    sides = np.sqrt(np.prod(found.boxes[:, 2:] - found.boxes[:, :2], axis=1))
    assert len(found.boxes) == 6 and sides == pytest.approx(fake.true_side)


def test_overlap_suppression_drops_a_second_peak_on_the_same_cell(fake, monkeypatch):
    single = fake.find

    def twin_peaks(image, thresholds=None):
        # Every cell also gets a weaker summit 2 px away: the network's double peak.
        p = single(image, thresholds)
        return Peaks(
            np.vstack([p.boxes, p.boxes + 2]),
            np.concatenate([p.labels, p.labels]),
            np.vstack([p.probabilities, p.probabilities]),
            np.concatenate([p.scores, p.scores - 0.1]),
        )

    monkeypatch.setattr(fake, "find", twin_peaks)
    image = np.full((480, 640, 3), 220, np.uint8)
    assert len(detect_dense.detect_cells_dense(image, fake, radius=TRUE_RADIUS).boxes) == 12
    fake.nms_iou = 0.5
    found = detect_dense.detect_cells_dense(image, fake, radius=TRUE_RADIUS)
    assert len(found.boxes) == 6 and (found.background == pytest.approx(0.1))
