"""Detector training data: augmented boxes stay on their cells; targets peak at the centres."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.detector.data import (
    SIZE_UNIT,
    STRIDE,
    Slide,
    augment,
    augment_with_ignore,
    batch_at,
    loss_weights,
    targets,
)


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
    assert y.shape == (3, 24, 24, 11)  # heat 3 + box regression 4 + centre mask 1 + weights 3
    heat, reg, mask = y[..., :3], y[..., 3:7], y[..., 7]
    assert (y[..., 8:] == 1).all()  # complete labels: the heatmap loss looks everywhere
    assert mask.sum() >= 1 and (heat[mask == 1].max(axis=-1) == 1.0).all()
    assert (reg[mask == 0] == 0).all()
    np.testing.assert_array_equal(x, batch_at(slides, 3, 96, seed=7, index=5)[0])
    assert not np.array_equal(x, batch_at(slides, 3, 96, seed=7, index=6)[0])

    # The pool runs in a fresh interpreter, as the training command forks it: a process
    # that has already run TensorFlow (as this test session may have) cannot fork safely.
    script = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]);"
        "from test_detector_data import _slide; from training.detector.feed import batches;"
        "s = [_slide(), _slide()];"
        "a, b = batches(s, 3, 96, 7, workers=0), batches(s, 3, 96, 7, workers=2);"
        "pairs = [(next(a), next(b)) for _ in range(5)];"
        "assert all(x[0].dtype == np.float32 for x, _ in pairs);"
        "assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in pairs);"
        "a.close(); b.close(); print('same stream')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0 and "same stream" in done.stdout, done.stderr[-2000:]


def test_a_hung_batch_worker_is_an_error_not_a_silent_wait():
    script = (
        "import time; import training.detector.data as d, training.detector.feed as t;"
        "t.BATCH_TIMEOUT = 1; d.batch_at = lambda *a: time.sleep(30);"
        "g = t.batches([], 1, 96, 0, workers=1)\n"
        "try:\n    next(g)\nexcept RuntimeError as e:\n    print(e)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert "no batch from the 1 batch workers in 1 s" in done.stdout, done.stderr[-2000:]


def test_platelet_focus_draws_windows_that_hold_a_platelet():
    slide = _slide()  # a red cell at the left, a "platelet" (class 2) far right
    slide = Slide("p", "test", slide.image, slide.boxes, np.array([0, 2]), slide.colour, 1.0, 1.0)

    def platelet_crops(focus: float) -> int:
        batches = [
            batch_at([slide], 8, 64, seed=1, index=i, platelet_focus=focus) for i in range(10)
        ]
        heat = np.concatenate([y for _, y in batches])[..., 2]
        return int((heat.max(axis=(1, 2)) == 1.0).sum())

    assert platelet_crops(1.0) == 80  # every window holds the whole platelet
    assert platelet_crops(0.0) < 60  # a 64 px window on a 200 px slide often misses it


def test_degrade_blurs_or_compresses_crops_and_leaves_the_default_stream_alone():
    slides = [_slide(), _slide()]
    plain_x, plain_y = batch_at(slides, 6, 96, seed=3, index=2)
    x0, y0 = batch_at(slides, 6, 96, seed=3, index=2, degrade=0.0)
    np.testing.assert_array_equal(plain_x, x0)  # 0: the recipe's draws, unchanged
    np.testing.assert_array_equal(plain_y, y0)
    x, y = batch_at(slides, 6, 96, seed=3, index=2, degrade=1.0)
    # The first crop takes the same window; only its pixels change, within what a blur or
    # a JPEG round trip does to them.
    np.testing.assert_array_equal(plain_y[0], y[0])
    change = np.abs(plain_x[0].astype(np.int16) - x[0])
    assert change.max() > 0 and change.mean() < 20
    assert x.dtype == np.uint8 and x.shape == plain_x.shape


def _partly_labelled() -> Slide:
    """The two-cell slide with its second cell grey, unlabelled, and in an ignore box."""
    slide = _slide()
    image = slide.image.copy()
    image[70:100, 120:160] = (40, 40, 40)
    return Slide(
        "partial",
        "bccd",
        image,
        slide.boxes[:1],
        slide.labels[:1],
        slide.colour,
        1.0,
        1.0,
        ignore_boxes=np.array([[115, 65, 165, 105]], np.float32),
        ignore_labels=np.array([2]),
        ignored_classes=(1,),
    )


def test_ignore_boxes_follow_their_cell_through_flips_rotations_and_crops():
    slide = _partly_labelled()
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(60):
        view, _, _, ignore, ignore_labels = augment_with_ignore(slide, 96, rng)
        assert (ignore_labels == 2).all()
        pixels = view.astype(int)
        # The grey cell stays dark and colourless through the colour jitter; the labelled
        # cell is purple and the glass bright.
        grey = (pixels.mean(axis=2) < 100) & (np.ptp(pixels, axis=2) < 40)
        if not grey.any():
            continue
        assert len(ignore) == 1
        x0, y0, x1, y1 = ignore[0]
        ys, xs = np.nonzero(grey)
        assert (xs >= x0 - 1).all() and (xs <= x1).all(), (xs.min(), xs.max(), ignore)
        assert (ys >= y0 - 1).all() and (ys <= y1).all(), (ys.min(), ys.max(), ignore)
        seen += 1
    assert seen > 10


def test_a_complete_slide_draws_the_same_crops_as_before_ignore_regions_existed():
    # Ignore regions take no random draws: the old augment() and the new one agree.
    a = augment(_slide(), 96, np.random.default_rng(5))
    b = augment_with_ignore(_slide(), 96, np.random.default_rng(5))
    for x, y in zip(a, b[:3], strict=True):
        np.testing.assert_array_equal(x, y)
    assert b[3].shape == (0, 4) and b[4].shape == (0,)


def test_loss_weights_switch_off_ignored_classes_and_regions_only():
    w = loss_weights(np.array([[10, 10, 30, 22]], np.float32), np.array([2]), (0,), 64)
    assert w.shape == (16, 16, 3)
    assert (w[..., 0] == 0).all()  # a class the slide does not label
    assert (w[..., 1] == 1).all()
    assert (w[2:6, 2:8, 2] == 0).all() and w[..., 2].sum() == 16 * 16 - 4 * 6


def test_source_weights_draw_a_source_more_often_and_default_to_the_recipe():
    a = _slide()
    # Slide b's glass is dark, so a crop's brightness tells which slide it came from.
    dark = np.where(a.image == 230, 40, a.image).astype(np.uint8)
    b = Slide("b", "other", dark, a.boxes, a.labels, (40, 40, 40), 1.0, 1.0)
    slides = [a, b]
    plain = batch_at(slides, 8, 96, seed=4, index=1)
    for same in (None, {}, {"other": 1.0}):
        np.testing.assert_array_equal(
            plain[0], batch_at(slides, 8, 96, seed=4, index=1, source_weights=same)[0]
        )

    def share_of_b(weights) -> float:
        views = np.concatenate(
            [batch_at(slides, 8, 96, seed=4, index=i, source_weights=weights)[0] for i in range(40)]
        )
        return float((views.mean(axis=(1, 2, 3)) < 120).mean())

    assert 0.35 < share_of_b(None) < 0.65
    assert share_of_b({"other": 9.0}) > 0.8
    assert share_of_b({"test": 9.0}) < 0.2


def test_source_weights_name_a_known_source_and_a_positive_number():
    from training.detector.data import parse_source_weights

    sources = ["txl-bccd", "txl-pbc"]
    assert parse_source_weights(["txl-bccd=3", "txl-pbc=0.5"], sources) == {
        "txl-bccd": 3.0,
        "txl-pbc": 0.5,
    }
    for spec, says in (
        ("bccd=3", "SOURCE one of ['txl-bccd', 'txl-pbc']"),
        ("txl-bccd", "expected SOURCE=WEIGHT"),
        ("txl-bccd=x", "'x' is not a number"),
        ("txl-bccd=0", "must be above 0"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            parse_source_weights([spec], sources)
