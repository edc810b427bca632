"""Export the dense detector to LiteRT with a resizable (1, H, W, 3) input; no TF at serving time.

``python -m training.detector.export --run DIR`` exports ``DIR/model.weights.h5`` (from a
run trained with ``--no-export``, on any Keras backend) to ``DIR/model.tflite``; the
export itself needs the TensorFlow backend. ``--run A --ensemble-with B --out DIR`` writes
one graph that outputs the mean of A's and B's networks (and a train_log.json naming both).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def saved_model(model) -> Iterator[str]:
    """A temporary SavedModel of ``model`` with a resizable (1, H, W, 3) float input.

    Convert through it: converting a Keras 3 concrete function directly leaves the weights
    as uninitialised resource variables (the model then outputs NaN).
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        signature = [tf.TensorSpec([1, None, None, 3], tf.float32, name="slide")]
        model.export(tmp, format="tf_saved_model", input_signature=signature, verbose=False)
        yield tmp


def export_tflite(model, path: Path, quantize: bool = False) -> Path:
    """Write ``model`` as a LiteRT flatbuffer whose input H and W can be resized at run time."""
    import tensorflow as tf

    with saved_model(model) as tmp:
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        blob = converter.convert()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


def ensemble(runs: list[Path]):
    """One Keras model whose output is the mean of the runs' networks (all 7 channels).

    One graph runs with one LiteRT interpreter per slide shape; separate member files
    (``ship --member``) need one per network, and building interpreters is what a
    two-network ensemble lost against 1.5.0's speed.
    """
    import keras

    from training.detector.model import build_detector

    slide = keras.Input((None, None, 3), name="slide_rgb_0_255")
    outputs = []
    for i, run in enumerate(runs):
        net, _ = build_detector(None)
        net.load_weights(run / "model.weights.h5")
        # Nested models need distinct names in the enclosing graph.
        member = keras.Model(net.inputs[0], net.outputs[0], name=f"member_{i}")
        outputs.append(member(slide))
    return keras.Model(slide, keras.layers.Average(name="mean")(outputs), name="ensemble")


def ensemble_log(runs: list[Path]) -> dict:
    """A train_log.json for an in-graph ensemble: the first run's, plus every run's own."""
    logs = [json.loads((run / "train_log.json").read_text()) for run in runs]
    merged = dict(logs[0])
    merged["seconds"] = round(sum(log["seconds"] for log in logs), 1)
    merged["ensemble_of"] = [
        {"run": str(run), **{k: v for k, v in log.items() if k != "log"}}
        for run, log in zip(runs, logs, strict=True)
    ]
    return merged


def sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="a training run's folder")
    parser.add_argument(
        "--ensemble-with",
        type=Path,
        action="append",
        default=[],
        help="more runs: export the mean of all their networks as one graph to --out",
    )
    parser.add_argument("--out", type=Path, help="with --ensemble-with: the folder to write")
    args = parser.parse_args(argv)
    if args.ensemble_with:
        if args.out is None:
            parser.error("--ensemble-with needs --out")
        runs = [args.run, *args.ensemble_with]
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "train_log.json").write_text(json.dumps(ensemble_log(runs), indent=1))
        print(export_tflite(ensemble(runs), args.out / "model.tflite"))
        return
    from training.detector.model import build_detector

    model, _ = build_detector(None)
    model.load_weights(args.run / "model.weights.h5")
    print(export_tflite(model, args.run / "model.tflite"))


if __name__ == "__main__":
    main()
