"""Proposal-stage recall on synthetic smears with exact truth, at two magnifications."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcount.vision.geometry import iou_matrix
from bloodcount.vision.proposals import at_least_percentile, estimate_cell_radius, find_cells
from tests.synthetic import PLASMA, make_smear


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_every_synthetic_cell_is_proposed(scale):
    hits = total = 0
    for seed in range(6):
        smear = make_smear(seed, width=int(640 * scale), height=int(480 * scale), scale=scale)
        found = find_cells(smear.image)
        best = iou_matrix(smear.boxes, found.boxes).max(axis=1)
        hits += int((best >= 0.5).sum())
        total += len(best)
        # Not a flood of boxes: at most ~3 proposals per true cell.
        assert len(found.boxes) <= 3 * len(smear.boxes) + 5
    assert hits / total >= 0.95


def test_cell_scale_follows_magnification():
    small = estimate_cell_radius(make_smear(3).image)
    large = estimate_cell_radius(make_smear(3, width=1280, height=960, scale=2.0).image)
    assert 1.7 < large / small < 2.3


def test_empty_slide_proposes_almost_nothing():
    rng = np.random.default_rng(0)
    blank = np.clip(np.full((480, 640, 3), PLASMA) + rng.normal(0, 3, (480, 640, 3)), 0, 255)
    assert len(find_cells(blank.astype(np.uint8)).boxes) <= 3


def test_at_least_percentile_is_numpys_comparison_exactly():
    # It replaces `values >= np.percentile(values, q)` on every slide: any disagreement
    # would move the plasma colour, so it must agree on every size, spread and type.
    rng = np.random.default_rng(0)
    for size in [*range(1, 40), 4605, 4606, 4607, 4608, 19200, 27649]:
        for dtype, top in ((np.uint8, 2), (np.uint8, 256), (np.int16, 7), (np.int32, 766)):
            values = rng.integers(0, top, size=size).astype(dtype)
            for q in (20, 50, 80, 99):
                expected = values >= np.percentile(values, q)
                np.testing.assert_array_equal(at_least_percentile(values, q), expected)
    image = rng.integers(0, 256, size=(120, 160)).astype(np.int16)
    assert at_least_percentile(image, 80).shape == (120, 160)
