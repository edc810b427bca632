"""The detector's training code end to end: a few steps on two slides, exported, loaded by LiteRT."""

from __future__ import annotations

import numpy as np
import pytest

from bloodcount.vision.canonical import to_canonical
from bloodcount.vision.dense_detector import DenseDetector


@pytest.mark.slow
def test_a_few_training_steps_export_a_loadable_detector(data_dir, tmp_path):
    pytest.importorskip("tensorflow")
    from training.detector.ship import _card_base
    from training.detector.train import train
    from training.model import default_weights_path

    weights = default_weights_path()
    if not weights.is_file():
        pytest.skip(f"no MobileNetV2 weights at {weights}")
    train(
        tmp_path,
        steps=3,
        batch=2,
        crop=96,
        lr=1e-3,
        seed=0,
        weights=weights,
        data_dir=data_dir,
        limit=2,
        log_every=1,
    )
    model = tmp_path / "model.tflite"
    assert model.is_file() and (tmp_path / "train_log.json").is_file()
    detector = DenseDetector(model, _card_base(model, {"RBC": 0.5, "WBC": 0.5, "Platelets": 0.5}))
    canon = to_canonical(np.full((120, 200, 3), 220, np.uint8), radius=16.0)
    out = detector.predict(canon.image)
    assert out.shape == (canon.image.shape[0] // 4, canon.image.shape[1] // 4, 7)
    assert np.isfinite(out).all() and ((out[..., :3] >= 0) & (out[..., :3] <= 1)).all()
