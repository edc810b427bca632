"""The detector's training code end to end: a few steps on two slides, exported, loaded by LiteRT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bloodcount.vision.canonical import to_canonical
from bloodcount.vision.dense_detector import DenseDetector

# A run small enough for a test: two slides, 96 px crops, two per batch, a log every step.
TINY = dict(batch=2, crop=96, seed=0, limit=2, log_every=1)


@pytest.mark.slow
def test_a_few_training_steps_export_a_loadable_detector(data_dir, tmp_path):
    pytest.importorskip("tensorflow")
    from training.detector.ship import _card_base
    from training.detector.train import train
    from training.model import default_weights_path

    weights = default_weights_path()
    if not weights.is_file():
        pytest.skip(f"no MobileNetV2 weights at {weights}")
    train(tmp_path, steps=3, lr=1e-3, weights=weights, data_dir=data_dir, **TINY)
    model = tmp_path / "model.tflite"
    assert model.is_file() and (tmp_path / "train_log.json").is_file()
    detector = DenseDetector(model, _card_base(model, {"RBC": 0.5, "WBC": 0.5, "Platelets": 0.5}))
    canon = to_canonical(np.full((120, 200, 3), 220, np.uint8), radius=16.0)
    out = detector.predict(canon.image)
    assert out.shape == (canon.image.shape[0] // 4, canon.image.shape[1] // 4, 7)
    assert np.isfinite(out).all() and ((out[..., :3] >= 0) & (out[..., :3] <= 1)).all()


@pytest.mark.slow
def test_init_starts_from_an_earlier_runs_weights(data_dir, tmp_path):
    pytest.importorskip("tensorflow")
    from training.detector.model import build_detector
    from training.detector.train import train

    common = dict(TINY, weights=None, data_dir=data_dir)
    first = train(tmp_path / "a", steps=2, lr=1e-3, export=False, **common)
    # A second seed would start elsewhere; with --init and a vanishing learning rate the
    # trainable weights stay where the first run left them.
    second = train(
        tmp_path / "b",
        steps=2,
        lr=1e-9,
        export=False,
        init=tmp_path / "a" / "model.weights.h5",
        **{**common, "seed": 1},
    )
    fresh, _ = build_detector(None, seed=1)
    for a, b in zip(first.trainable_weights, second.trainable_weights, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6)
    assert any(
        not np.allclose(np.asarray(a), np.asarray(c))
        for a, c in zip(first.trainable_weights, fresh.trainable_weights, strict=True)
    )


@pytest.mark.slow
def test_ema_ships_the_averaged_weights_and_keeps_the_raw_ones(data_dir, tmp_path):
    pytest.importorskip("tensorflow")
    from training.detector.model import build_detector
    from training.detector.train import train

    out = tmp_path / "ema"
    model = train(
        out, steps=3, lr=1e-2, weights=None, data_dir=data_dir, export=False, ema=0.5, **TINY
    )
    raw, _ = build_detector(None, seed=0)
    raw.load_weights(out / "model.raw.weights.h5")
    saved, _ = build_detector(None, seed=0)
    saved.load_weights(out / "model.weights.h5")
    pairs = list(
        zip(model.trainable_weights, saved.trainable_weights, raw.trainable_weights, strict=True)
    )
    for final, kept, _ in pairs:
        np.testing.assert_array_equal(np.asarray(kept), np.asarray(final))
    # The average lags the last steps, so it differs from the plain final weights.
    assert any(not np.allclose(np.asarray(f), np.asarray(r)) for f, _, r in pairs)
    assert json.loads((out / "train_log.json").read_text())["ema"] == 0.5


def test_the_batch_pool_feeds_real_slides_as_the_training_command_forks_it(data_dir):
    """Real slides are decoded and sized with OpenCV (its thread pool running) before the
    fork: the workers must still make the same batches as one process."""
    script = (
        "import sys; from pathlib import Path; from training.detector import data;"
        "from training.detector.feed import batches;"
        "s = [data.load_slide(r) for r in data.txl_records('train', Path(sys.argv[1]))[:4]];"
        "a, b = batches(s, 4, 160, 3, workers=0), batches(s, 4, 160, 3, workers=2);"
        "pairs = [(next(a), next(b)) for _ in range(3)];"
        "assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in pairs);"
        "assert sum(float(x[1][..., 7].sum()) for x, _ in pairs) > 0;"  # cells in the crops
        "a.close(); b.close(); print('same stream')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0 and "same stream" in done.stdout, done.stderr[-2000:]


def test_ship_writes_an_ensemble_that_loads_and_names_each_network(data_dir, tmp_path, monkeypatch):
    """`ship --member`: a run plus a shipped detector become one folder, each file checked."""
    from bloodcount.vision.dense_detector import DETECTOR_DIR
    from training.detector import ship

    monkeypatch.setenv("BLOODCOUNT_DATA", str(data_dir))
    run, out = tmp_path / "run", tmp_path / "out"
    run.mkdir()
    blob = (DETECTOR_DIR / "model.tflite").read_bytes()
    (run / "model.tflite").write_bytes(blob)
    shipped = json.loads((DETECTOR_DIR / "card.json").read_text())
    log = {k: shipped["training"][k] for k in ("steps", "batch", "crop", "lr", "seed")}
    log.update(train_slides=1, seconds=1.0, log=[{"step": 1}], backend="jax")
    (run / "train_log.json").write_text(json.dumps(log))
    ship.main(
        ["--run", str(run), "--member", str(DETECTOR_DIR), "--out", str(out)]
        + ["--inference-scales", "1.0", "--nms-ious", "0.5", "--version", "0.0.1"]
    )
    card = json.loads((out / "card.json").read_text())
    [member] = card["members"]
    assert member["file"] == "member-1.tflite" and member["sha256"] == shipped["sha256"]
    assert member["detector"] == f"{shipped['name']} {shipped['version']}"
    assert (out / "member-1.tflite").read_bytes() == blob
    assert "--member" in card["commands"][-1] and "ensemble" in (out / "card.md").read_text()
    # Two copies of one network tune to that network's own validation figures.
    assert card["metrics"]["val"] == ship.score(
        ship.suppressed(ship.collect(run / "model.tflite", "val"), 0.5), card["thresholds"]
    )
    assert DenseDetector.load(out).info["version"] == "0.0.1"


@pytest.mark.slow
def test_an_ensemble_exports_as_one_graph_whose_output_is_the_mean(tmp_path):
    """`export --ensemble-with`: two networks in one LiteRT graph, equal to their mean."""
    pytest.importorskip("tensorflow")
    from training.detector import export
    from training.detector.model import build_detector
    from training.detector.ship import _train_commands

    runs = [tmp_path / "seed1", tmp_path / "seed2"]
    for seed, run in enumerate(runs, start=1):
        run.mkdir()
        net, _ = build_detector(None, seed=seed)
        for name in ("heatmap", "box_regression"):  # untrained heads sit near their priors
            kernel, bias = net.get_layer(name).get_weights()
            net.get_layer(name).set_weights([kernel, bias + 0.5 * seed])
        net.save_weights(run / "model.weights.h5")
        log = dict(steps=2, batch=2, crop=96, lr=2e-3, seed=seed, seconds=1.5, log=[])
        (run / "train_log.json").write_text(json.dumps(log))
        export.main(["--run", str(run)])
    out = tmp_path / "ensemble"
    export.main(["--run", str(runs[0]), "--ensemble-with", str(runs[1]), "--out", str(out)])
    card = {"classes": ["RBC", "WBC", "Platelets"], "stride": 4, "size_unit": 16.0}
    card.update(canonical_radius=16.0, thresholds={"RBC": 0.5, "WBC": 0.5, "Platelets": 0.5})
    image = to_canonical(np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)).image
    a, b, both = (DenseDetector(p / "model.tflite", card).predict(image) for p in [*runs, out])
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_allclose(both, (a + b) / 2, atol=1e-5)
    log = json.loads((out / "train_log.json").read_text())
    assert [m["seed"] for m in log["ensemble_of"]] == [1, 2] and log["seconds"] == 3.0
    commands = _train_commands(log, out)
    # TensorFlow runs (no backend in these logs): one command per run, then the export.
    assert "--seed 1 " in commands[0] and "--seed 2 " in commands[1] and len(commands) == 3
    assert commands[2].endswith(f"--ensemble-with {runs[1]} --out {out}")


@pytest.mark.slow
def test_a_weight_average_is_one_network_whose_every_weight_is_the_runs_mean(tmp_path):
    """`soup`: the mean of runs from one start, saved, exported and loadable as one detector."""
    pytest.importorskip("tensorflow")
    from training.detector import soup
    from training.detector.model import build_detector

    runs = [tmp_path / "seed1", tmp_path / "seed2", tmp_path / "seed3"]
    for seed, run in enumerate(runs, start=1):
        run.mkdir()
        build_detector(None, seed=seed)[0].save_weights(run / "model.weights.h5")
        log = dict(steps=2, batch=2, crop=96, lr=2e-4, seed=seed, seconds=1.0, log=[])
        log["init"] = "var/start/model.weights.h5"
        (run / "train_log.json").write_text(json.dumps(log))
    out = tmp_path / "soup"
    soup.main([*(a for run in runs for a in ("--run", str(run))), "--out", str(out)])
    net, _ = build_detector(None)
    each = []
    for run in runs:
        net.load_weights(run / "model.weights.h5")
        each.append(net.get_weights())
    net.load_weights(out / "model.weights.h5")
    averaged = net.get_weights()
    assert len(averaged) == len(each[0])
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(each[0], each[1], strict=True))
    for mean, *parts in zip(averaged, *each, strict=True):
        np.testing.assert_allclose(mean, np.mean(parts, axis=0), atol=1e-6)
    card = {"classes": ["RBC", "WBC", "Platelets"], "stride": 4, "size_unit": 16.0}
    card.update(canonical_radius=16.0, thresholds={"RBC": 0.5, "WBC": 0.5, "Platelets": 0.5})
    image = to_canonical(np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)).image
    assert np.isfinite(DenseDetector(out / "model.tflite", card).predict(image)).all()
    log = json.loads((out / "train_log.json").read_text())
    assert [m["seed"] for m in log["soup_of"]] == [1, 2, 3] and log["seconds"] == 3.0


@pytest.mark.slow
def test_weights_recovered_from_a_litert_file_give_its_output(tmp_path):
    """`recover`: the converter folds each BatchNorm into its convolution; the Keras network
    rebuilt from the file (identity BatchNorms carrying the bias) computes what the file does."""
    pytest.importorskip("tensorflow")
    import keras

    from training.detector import export, recover
    from training.detector.model import build_detector, every_layer

    run = tmp_path / "run"
    run.mkdir()
    net, _ = build_detector(None, seed=1)
    rng = np.random.default_rng(0)
    for layer in every_layer(net):
        if isinstance(layer, keras.layers.BatchNormalization):
            # Statistics far from the identity, so an unfolded BatchNorm would show.
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.3, n),
                    rng.normal(0, 0.3, n),
                    rng.uniform(0.5, 2.0, n),
                ]
            )
    net.save_weights(run / "model.weights.h5")
    (run / "train_log.json").write_text(json.dumps(dict(steps=1, batch=2, crop=96, lr=2e-3)))
    export.main(["--run", str(run)])

    fresh, _ = build_detector(None, seed=2)
    image = rng.integers(0, 255, (96, 128, 3), np.uint8)
    assert recover.largest_difference(fresh, run / "model.tflite", image) > 1e-2
    assert recover.recover_weights(fresh, run / "model.tflite") == 53
    assert recover.largest_difference(fresh, run / "model.tflite", image) < 1e-4


def test_recovered_weights_are_fine_tuned_only_with_frozen_batchnorms(tmp_path):
    from training.detector.train import train

    (tmp_path / "recovered.json").write_text("{}")
    with pytest.raises(ValueError, match="--freeze-bn"):
        train(tmp_path / "out", 50, 2, 96, 2e-3, 0, None, init=tmp_path / "model.weights.h5")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_freeze_bn_keeps_every_batchnorm_as_it_was(data_dir, tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    from training.detector.model import build_detector, every_layer
    from training.detector.train import train

    def norms(model):
        return [
            np.concatenate([np.ravel(w) for w in layer.get_weights()])
            for layer in every_layer(model)
            if isinstance(layer, keras.layers.BatchNormalization)
        ]

    common = dict(TINY, weights=None, data_dir=data_dir, steps=2, lr=1e-3, export=False)
    frozen = train(tmp_path / "frozen", freeze_bn=True, **common)
    free = train(tmp_path / "free", **common)
    start, _ = build_detector(None, seed=TINY["seed"])
    for a, b in zip(norms(frozen), norms(start), strict=True):
        np.testing.assert_array_equal(a, b)
    # Unfrozen, the heads' BatchNorms learn batch statistics in two steps.
    assert any(not np.allclose(a, b) for a, b in zip(norms(free), norms(start), strict=True))
    heat = [m.get_layer("heatmap").get_weights()[0] for m in (frozen, start)]
    assert not np.allclose(*heat)  # while the convolutions still learn
