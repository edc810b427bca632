"""Smoke training, LiteRT export agreement, the shipped model, and the classify command."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bloodcount.config import DEFAULT_MODEL_DIR
from bloodcount.vision.crops import crop_cell
from training.datasets import ReadReport, read_voc
from training.export import LiteClassifier, sha256_file
from training.samples import build_crops

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_crops(data_dir: Path):
    """A few dozen crops per side from six BCCD images (all classes present)."""
    records = read_voc(data_dir / "bccd/Annotations", data_dir / "bccd/JPEGImages", "bccd")[:6]
    classes = ("RBC", "WBC", "Platelets", "background")
    sides = {"train": records[:4], "val": records[4:5], "test": records[5:]}
    return {
        side: build_crops(recs, 48, classes, seed=0, jitter_copies=0)
        for side, recs in sides.items()
    }


@pytest.mark.slow
@pytest.mark.data
def test_smoke_training_exports_a_model_taking_raw_uint8(tiny_crops, tmp_path: Path) -> None:
    import keras

    from training.export import export_tflite
    from training.model import default_weights_path
    from training.train import PROFILES, fit

    if not default_weights_path().is_file():
        pytest.skip(f"MobileNetV2 weights not at {default_weights_path()}")
    profile = replace(
        PROFILES["default"],
        input_size=48,
        phase1_epochs=1,
        phase1_views=1,
        phase2_epochs=1,
        rbc_per_epoch=20,
    )
    model, history = fit(profile, tiny_crops, default_weights_path(), 0, tmp_path)
    assert len(history["loss"]) == 2 and history["phase_boundaries"] == [1]
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    crops = tiny_crops["test"].x  # uint8, 0..255: no caller-side preprocessing
    assert crops.dtype == np.uint8
    probs = reloaded.predict(crops, verbose=0)
    assert probs.shape == (len(crops), 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, model.predict(crops.astype(np.float32), verbose=0), atol=1e-5)

    export_tflite(model, tmp_path / "model.tflite")
    lite = LiteClassifier(tmp_path / "model.tflite").predict(crops)
    np.testing.assert_allclose(lite, probs, atol=1e-4)
    assert (lite.argmax(1) == probs.argmax(1)).all()


@pytest.mark.slow
def test_flip_average_is_the_mean_of_four_mirror_views_and_survives_export(tmp_path: Path) -> None:
    import keras

    from training.export import export_tflite
    from training.flip_average import with_flip_average
    from training.model import build_model, default_weights_path

    if not default_weights_path().is_file():
        pytest.skip(f"MobileNetV2 weights not at {default_weights_path()}")
    # ImageNet features under an untrained head: outputs that differ from crop to crop.
    inner = build_model(32, 0.35, 4, default_weights_path(), seed=3)[0]
    model = with_flip_average(inner)
    crops = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.float32)
    views = [crops, crops[:, :, ::-1], crops[:, ::-1], crops[:, ::-1, ::-1]]
    expected = np.mean([inner.predict(v, verbose=0) for v in views], axis=0)
    probs = model.predict(crops, verbose=0)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # A crop and its mirror image now get the same answer, which the bare network does not.
    np.testing.assert_allclose(model.predict(crops[:, :, ::-1], verbose=0), probs, atol=1e-5)
    assert not np.allclose(
        inner.predict(crops[:, :, ::-1], verbose=0), inner.predict(crops, verbose=0)
    )

    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(crops, verbose=0), probs, atol=1e-5)
    export_tflite(model, tmp_path / "model.tflite")
    lite = LiteClassifier(tmp_path / "model.tflite").predict(crops.astype(np.uint8))
    np.testing.assert_allclose(lite, probs, atol=1e-4)


def test_shipped_model_loads_and_matches_its_card() -> None:
    card = json.loads((DEFAULT_MODEL_DIR / "card.json").read_text())
    assert card["sha256"] == sha256_file(DEFAULT_MODEL_DIR / "model.tflite")
    assert card["name"] == "bloodcount-mobilenetv2"
    assert card["classes"] == ["RBC", "WBC", "Platelets", "background"]
    assert card["profile"] == "default" and card["alpha"] == 0.35
    from training.split import MANIFEST_PATH, manifest_sha256

    assert card["split_manifest_sha256"] == manifest_sha256(MANIFEST_PATH)
    lite = LiteClassifier(DEFAULT_MODEL_DIR / "model.tflite")
    assert lite.size == card["input_size"]
    crops = np.random.default_rng(0).integers(0, 255, (3, lite.size, lite.size, 3), np.uint8)
    probs = lite.predict(crops)
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    for name in (
        "card.md",
        "confusion_matrix.png",
        "confusion_matrix.json",
        "training_curves.png",
        "classification_report.txt",
    ):
        assert (DEFAULT_MODEL_DIR / name).is_file(), name


@pytest.mark.data
def test_shipped_model_classifies_held_out_cells(data_dir: Path) -> None:
    """The shipped LiteRT model on a few held-out BCCD test images (crops as in service)."""
    from training.split import held_out_images

    card = json.loads((DEFAULT_MODEL_DIR / "card.json").read_text())
    lite = LiteClassifier(DEFAULT_MODEL_DIR / "model.tflite")
    images = held_out_images("bccd", data_dir=data_dir)[:8]
    recs = []
    for item in images:
        recs += [
            r
            for r in read_voc(item["labels"].parent, item["image"].parent, "bccd", ReadReport())
            if r.labels_path == item["labels"]
        ]
    crops = build_crops(recs, lite.size, tuple(card["classes"]), seed=0)
    pred = lite.predict(crops.x)[:, :3].argmax(1)
    assert (pred == crops.y).mean() > 0.97


@pytest.mark.data
def test_classify_command_writes_the_report(data_dir: Path, tmp_path: Path) -> None:
    """``bloodcount classify`` on a 3-image VOC folder (runs on LiteRT, no TensorFlow)."""
    ann, img = tmp_path / "Annotations", tmp_path / "JPEGImages"
    ann.mkdir()
    img.mkdir()
    for name in ("BloodImage_00000", "BloodImage_00001", "BloodImage_00002"):
        (ann / f"{name}.xml").write_bytes(
            (data_dir / "bccd/Annotations" / f"{name}.xml").read_bytes()
        )
        (img / f"{name}.jpg").symlink_to(data_dir / "bccd/JPEGImages" / f"{name}.jpg")
    (ann / "bad.xml").write_text("<annotation>")
    out = tmp_path / "out.json"
    code = (
        "import sys; from bloodcount.cli import main; rc = main(sys.argv[1:]); "
        "assert 'tensorflow' not in sys.modules, 'classify imported TensorFlow'; sys.exit(rc)"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "classify",
            "--labels",
            str(ann),
            "--format",
            "voc",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["schema"] == "bloodcount.classification/v1"
    card = json.loads((DEFAULT_MODEL_DIR / "card.json").read_text())
    assert result["model"] == {k: card[k] for k in ("name", "version", "sha256")}
    assert len(result["crops"]) > 20
    first = result["crops"][0]
    assert set(first) == {"file", "box", "true", "predicted", "probabilities"}
    assert set(first["probabilities"]) == set(card["classes"])
    assert result["skipped"].get("malformed file") == 1
    assert result["metrics"]["cells"]["background_excluded"]["accuracy"] > 0.9


def test_commands_do_not_import_tensorflow() -> None:
    code = (
        "import sys, argparse; import training.commands as c; p = argparse.ArgumentParser(); "
        "c.register(p.add_subparsers()); "
        "a = p.parse_args(['train', '--profile', 'default', '--data', 'x']); "
        "assert a.handler and 'tensorflow' not in sys.modules; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_crop_used_for_training_is_the_service_crop() -> None:
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)
    from training.datasets import Box, ImageRecord

    rec = ImageRecord(
        Path("x.png"),
        Path("x.xml"),
        "bccd",
        "voc",
        80,
        60,
        [Box(10, 10, 30, 40, "RBC")],
        sha256="ab",
    )
    import training.samples as samples

    original = samples.read_rgb
    samples.read_rgb = lambda record, report: image
    try:
        crops = build_crops([rec], 32, ("RBC", "WBC", "Platelets"), seed=0)
    finally:
        samples.read_rgb = original
    np.testing.assert_array_equal(crops.x[0], crop_cell(image, (10, 10, 30, 40), 32))


def test_classify_names_what_the_dataset_lacks(tmp_path, capsys) -> None:
    """No traceback for a labels folder that is not there or YOLO labels without class names."""
    from bloodcount.cli import main

    argv = ["classify", "--format", "yolo", "--output", str(tmp_path / "out.json")]
    assert main([*argv, "--labels", str(tmp_path / "nowhere")]) == 2
    assert "no such labels file or folder" in capsys.readouterr().err
    (tmp_path / "labels").mkdir()
    assert main([*argv, "--labels", str(tmp_path / "labels")]) == 2
    assert "no class names for the YOLO labels" in capsys.readouterr().err
