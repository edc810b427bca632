"""Negative and jittered boxes, augmentation, metrics and the epoch sampler, without TF."""

from __future__ import annotations

import numpy as np
import pytest

from training.augment import DEFAULT, STUDY, augment_batch
from training.evaluate import cell_metrics, metrics
from training.negatives import NEG_MAX_IOU, POS_MIN_IOU, iou, jitter_box, sample_negatives
from training.train import class_weights, epoch_indices

# A grid of touching 40 px cells on a 400 x 300 slide, with one empty corner.
CELLS = [(x, y, x + 40, y + 40) for x in range(0, 240, 40) for y in range(0, 200, 40)]


def test_iou() -> None:
    boxes = np.array([(0, 0, 10, 10), (5, 0, 15, 10), (20, 20, 30, 30)])
    assert iou((0, 0, 10, 10), boxes) == pytest.approx([1.0, 1 / 3, 0.0])


def test_negatives_stay_below_the_iou_limit_with_every_cell() -> None:
    rng = np.random.default_rng(0)
    per_kind = {"random": 20, "shifted": 20, "partial": 20, "merged": 20, "plasma": 20}
    negs = sample_negatives(CELLS, 400, 300, rng, per_kind)
    kinds = {k for _, k in negs}
    assert kinds == set(per_kind)  # every kind can be drawn on this slide
    for box, kind in negs:
        overlaps = iou(box, np.array(CELLS))
        assert overlaps.max() < NEG_MAX_IOU, (kind, box)
        if kind == "plasma":
            assert overlaps.max() == 0
        if kind == "partial":  # covers part of a cell, not none
            assert overlaps.max() > 0


def test_merged_negative_spans_two_cells() -> None:
    negs = sample_negatives(CELLS, 400, 300, np.random.default_rng(1), {"merged": 10})
    for box, _ in negs:
        inside = [
            c
            for c in CELLS
            if c[0] >= box[0] and c[1] >= box[1] and c[2] <= box[2] and c[3] <= box[3]
        ]
        assert len(inside) >= 2


def test_no_negatives_without_labels() -> None:
    assert sample_negatives([], 100, 100, np.random.default_rng(0), {"random": 3}) == []


def test_jittered_boxes_overlap_their_cell() -> None:
    rng = np.random.default_rng(0)
    box = (100.0, 100.0, 140.0, 150.0)
    jittered = [jitter_box(box, rng) for _ in range(200)]
    assert all(iou(j, np.array([box]))[0] > POS_MIN_IOU for j in jittered)
    assert len({tuple(np.round(j, 3)) for j in jittered}) > 150  # they do move


@pytest.mark.parametrize("cfg", [DEFAULT, STUDY])
def test_augment_keeps_shape_and_range_and_is_seeded(cfg) -> None:
    batch = np.random.default_rng(0).integers(0, 255, (8, 48, 48, 3), dtype=np.uint8)
    a = augment_batch(batch, cfg, np.random.default_rng(5))
    b = augment_batch(batch, cfg, np.random.default_rng(5))
    assert a.shape == batch.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, batch.astype(np.float32))


def test_metrics_known_values() -> None:
    m = metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 2]), ["a", "b", "c"])
    assert m["accuracy"] == 0.8 and m["errors"] == 1
    assert m["per_class"]["a"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(0.66667),
        "support": 2,
    }
    assert m["confusion_matrix"]["rows_true_cols_predicted"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]


def test_cell_metrics_with_and_without_background() -> None:
    classes = ("RBC", "WBC", "Platelets", "background")
    probs = np.array(
        [
            [0.4, 0, 0, 0.6],  # an RBC the model calls background
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
        ]
    )
    y = np.array([0, 1, 2, 3])
    out = cell_metrics(probs, y, classes)
    assert out["background_excluded"]["accuracy"] == 1.0  # argmax over the cells only
    assert out["background_included"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert out["background_excluded"]["n"] == 3


def test_epoch_sampler_caps_rbc_and_keeps_the_rest() -> None:
    y = np.array([0] * 100 + [1] * 10 + [2] * 5)
    idx = epoch_indices(y, 20, 0, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [20, 10, 5]
    assert len(set(idx)) == len(idx)
    w = class_weights(y[idx], 3)
    assert w[2] > w[1] > w[0]
