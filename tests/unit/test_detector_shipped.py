"""The shipped detector: present, small, loadable, and exactly the file its card describes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from bloodcount.vision import CLASSES
from bloodcount.vision.canonical import CANONICAL_RADIUS, to_canonical
from bloodcount.vision.dense_detector import CARD_KEYS, DETECTOR_DIR, DenseDetector, DetectorError


def test_shipped_detector_matches_its_card_and_loads():
    card = json.loads((DETECTOR_DIR / "card.json").read_text())
    blob = (DETECTOR_DIR / "model.tflite").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == card["sha256"]
    assert len(blob) < 10 * 1024 * 1024
    assert all(k in card for k in CARD_KEYS) and card["classes"] == list(CLASSES)
    assert card["canonical_radius"] == CANONICAL_RADIUS  # runtime and model agree on the scale
    assert all(0 < card["thresholds"][c] < 1 for c in CLASSES)
    assert {"val", "test"} <= set(card["metrics"])
    detector = DenseDetector.load(DETECTOR_DIR)
    assert detector.info == {k: str(card[k]) for k in ("name", "version", "sha256")}
    out = detector.predict(to_canonical(np.full((200, 300, 3), 225, np.uint8), radius=16).image)
    assert np.isfinite(out).all()
    # Empty glass holds no cells.
    assert (out[..., :3] < detector.thresholds).all()


def test_a_tampered_detector_is_refused(tmp_path):
    for name in ("model.tflite", "card.json"):
        (tmp_path / name).write_bytes((DETECTOR_DIR / name).read_bytes())
    (tmp_path / "model.tflite").write_bytes((tmp_path / "model.tflite").read_bytes() + b"x")
    with pytest.raises(DetectorError, match="sha256"):
        DenseDetector.load(tmp_path)
    with pytest.raises(DetectorError, match="no detector"):
        DenseDetector.load(tmp_path / "missing")


def _ensemble_of_the_shipped_network(folder, blob_for_member):
    """A detector folder: the shipped network plus one member file holding ``blob_for_member``."""
    card = json.loads((DETECTOR_DIR / "card.json").read_text())
    (folder / "model.tflite").write_bytes((DETECTOR_DIR / "model.tflite").read_bytes())
    (folder / "member-1.tflite").write_bytes(blob_for_member)
    card["members"] = [{"file": "member-1.tflite", "sha256": card["sha256"]}]
    (folder / "card.json").write_text(json.dumps(card))


def test_an_ensemble_averages_its_networks_and_checks_each_file(tmp_path):
    blob = (DETECTOR_DIR / "model.tflite").read_bytes()
    _ensemble_of_the_shipped_network(tmp_path, blob)
    ensemble, single = DenseDetector.load(tmp_path), DenseDetector.load(DETECTOR_DIR)
    image = to_canonical(np.full((200, 300, 3), 225, np.uint8), radius=16).image
    image[60:100, 100:140] = (200, 120, 130)  # something cell-coloured for the heatmaps
    # Two copies of one network: the mean of two equal outputs is that output.
    np.testing.assert_allclose(ensemble.predict(image), single.predict(image), atol=1e-6)

    _ensemble_of_the_shipped_network(tmp_path, blob + b"x")
    with pytest.raises(DetectorError, match="member-1.tflite: sha256"):
        DenseDetector.load(tmp_path)
    (tmp_path / "member-1.tflite").unlink()
    with pytest.raises(DetectorError, match="names member member-1.tflite, absent"):
        DenseDetector.load(tmp_path)
