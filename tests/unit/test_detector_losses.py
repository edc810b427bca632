"""The detector's training objective, on the packed targets Keras's fit() hands it."""

from __future__ import annotations

import numpy as np
import pytest

from training.detector.data import targets


def _packed(boxes, labels, size=64):
    heat, reg, mask = targets(np.array(boxes, np.float32), np.array(labels), size)
    return np.concatenate([heat, reg, mask[..., None]], axis=-1)[None]


def test_the_packed_loss_is_the_sum_of_its_parts_and_rewards_the_right_answer():
    pytest.importorskip("keras")
    from training.detector.model import focal, offset, packed_loss, size

    y = _packed([[8, 8, 40, 40], [44, 30, 56, 42]], [0, 2])
    right = np.concatenate([y[..., :3], y[..., 3:7]], axis=-1)  # the targets themselves
    wrong = right.copy()
    wrong[..., :3] = 0.5  # unsure everywhere
    wrong[..., 3:5] += 1.0  # boxes 16 px too big
    parts = [float(f(y, wrong)) for f in (focal, size, offset)]
    assert float(packed_loss(y, wrong)) == pytest.approx(parts[0] + 0.1 * parts[1] + parts[2])
    assert parts[1] == pytest.approx(2.0)  # |1| on w and h at each of the two centres, per cell
    assert float(packed_loss(y, right)) < 0.1 * float(packed_loss(y, wrong))
    # Normalised per cell: a second image with the same cells gives the same loss.
    two = np.concatenate([y, y])
    assert float(packed_loss(two, np.concatenate([wrong, wrong]))) == pytest.approx(
        float(packed_loss(y, wrong)), rel=1e-5
    )


def test_ignored_positions_cost_nothing_but_labelled_centres_still_do():
    pytest.importorskip("keras")
    from training.detector.model import focal

    y = _packed([[8, 8, 40, 40]], [0])
    pred = np.concatenate([y[..., :3], y[..., 3:7]], axis=-1)
    weights = np.ones(y.shape[:-1] + (3,), np.float32)
    base = float(focal(np.concatenate([y, weights], axis=-1), pred))
    pred[0, 11, 11, 2] = 0.9  # a confident platelet where none is labelled
    looked = float(focal(np.concatenate([y, weights], axis=-1), pred))
    weights[0, 10:13, 10:13, 2] = 0.0  # ...where the labels may be missing
    ignored = float(focal(np.concatenate([y, weights], axis=-1), pred))
    assert looked > base + 1.0 and ignored == pytest.approx(base)
    # Zero weight on a labelled centre does not hide it: a missed cell still costs.
    weights[..., 0] = 0.0
    missed = pred.copy()
    missed[..., 0] = 0.01
    assert float(focal(np.concatenate([y, weights], axis=-1), missed)) > 1.0
