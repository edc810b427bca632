"""Detector training data: augmented boxes stay on their cells; targets peak at the centres."""

from __future__ import annotations

import numpy as np

from training.detector.data import SIZE_UNIT, STRIDE, Slide, augment, batch_at, targets
from training.detector.train import _batches


def _slide() -> Slide:
    image = np.full((120, 200, 3), 230, np.uint8)
    boxes = np.array([[20, 30, 50, 60], [120, 70, 160, 100]], np.float32)
    for x0, y0, x1, y1 in boxes.astype(int):
        image[y0:y1, x0:x1] = (150, 40, 120)  # one solid "cell" per box
    return Slide("s", "test", image, boxes, np.array([0, 1]), (230, 230, 230), 1.0, 1.0)


def test_augmented_boxes_cover_their_cells_after_flips_rotations_and_crops():
    slide = _slide()
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(40):
        view, boxes, labels = augment(slide, 96, rng)
        assert view.shape == (96, 96, 3) and len(boxes) == len(labels)
        for x0, y0, x1, y1 in boxes.round().astype(int):
            inside = view[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].astype(int)
            if inside.size:
                # Colour jitter moves the shade, but a cell stays far darker than the glass.
                assert inside.mean() < 200
                seen += 1
    assert seen > 20


def test_targets_peak_at_each_centre_with_size_and_offset():
    boxes = np.array([[8, 8, 40, 40], [50, 10, 62, 24]], np.float32)
    heat, reg, mask = targets(boxes, np.array([0, 2]), 96)
    assert heat.shape == (24, 24, 3) and mask.sum() == 2
    assert heat[6, 6, 0] == 1.0 and heat[4, 14, 2] == 1.0 and heat[..., 1].max() == 0
    np.testing.assert_allclose(
        reg[6, 6], [32 / SIZE_UNIT, 32 / SIZE_UNIT, 24 / STRIDE - 6, 24 / STRIDE - 6]
    )
    np.testing.assert_allclose(reg[4, 14, :2], [12 / SIZE_UNIT, 14 / SIZE_UNIT])


def test_batches_are_seeded_by_index_so_a_worker_pool_gives_the_same_stream():
    slides = [_slide(), _slide()]
    x, y = batch_at(slides, 3, 96, seed=7, index=5)
    assert x.shape == (3, 96, 96, 3) and x.dtype == np.uint8
    assert y.shape == (3, 24, 24, 8)  # heat 3 + box regression 4 + centre mask 1
    heat, reg, mask = y[..., :3], y[..., 3:7], y[..., 7]
    assert mask.sum() >= 1 and (heat[mask == 1].max(axis=-1) == 1.0).all()
    assert (reg[mask == 0] == 0).all()
    np.testing.assert_array_equal(x, batch_at(slides, 3, 96, seed=7, index=5)[0])
    assert not np.array_equal(x, batch_at(slides, 3, 96, seed=7, index=6)[0])

    serial, pooled = _batches(slides, 3, 96, 7, workers=0), _batches(slides, 3, 96, 7, workers=2)
    for _ in range(5):
        (xs, ys), (xp, yp) = next(serial), next(pooled)
        assert xs.dtype == np.float32
        np.testing.assert_array_equal(xs, xp)
        np.testing.assert_array_equal(ys, yp)
    pooled.close()
