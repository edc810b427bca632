"""The changes ``training.detector.robustness`` applies do what their names say."""

from __future__ import annotations

import numpy as np

from training.detector.robustness import CHANGES, markdown


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(60, 200, (48, 64, 3), dtype=np.uint8)  # BGR


def test_scale_changes_resize_and_the_rest_keep_the_size():
    image = _image()
    assert CHANGES["x0.5"](image).shape == (24, 32, 3)
    assert CHANGES["x2.5"](image).shape == (120, 160, 3)
    for name in ("darker", "warm", "pale", "hue+10", "blur1", "jpeg50"):
        assert CHANGES[name](image).shape == image.shape, name
    assert np.array_equal(CHANGES["x1"](image), image)


def test_colour_changes_move_the_channels_they_name():
    image = _image().astype(float)
    mean = lambda name: CHANGES[name](image.astype(np.uint8)).reshape(-1, 3).mean(0)  # noqa: E731
    base = image.reshape(-1, 3).mean(0)
    assert (mean("darker") < base - 10).all() and (mean("brighter") > base + 10).all()
    warm, cool = mean("warm"), mean("cool")
    assert warm[2] > base[2] > cool[2] and warm[0] < base[0] < cool[0]  # red up, blue down
    assert mean("gamma0.8").mean() > base.mean() > mean("gamma1.25").mean()


def test_markdown_has_a_row_per_source_and_class():
    cell = {"f1": 0.9, "count_accuracy": None, "true": 3}
    table = {
        "x1": {
            s: {c: cell for c in ("RBC", "WBC", "Platelets")}
            for s in ("txl-bccd", "txl-pbc", "txl-raabin")
        }
    }
    lines = markdown(table).splitlines()
    assert lines[0] == "| source | class | x1 |" and len(lines) == 2 + 9
    assert lines[2] == "| txl-bccd | RBC (3) | 0.900 / - |"
