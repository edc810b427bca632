"""Export the dense detector to LiteRT with a resizable (1, H, W, 3) input; no TF at serving time.

``python -m training.detector.export --run DIR`` exports ``DIR/model.weights.h5`` (from a
run trained with ``--no-export``, on any Keras backend) to ``DIR/model.tflite``; the
export itself needs the TensorFlow backend.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path


def export_tflite(model, path: Path, quantize: bool = False) -> Path:
    """Write ``model`` as a LiteRT flatbuffer whose input H and W can be resized at run time."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        # Through a SavedModel: converting a Keras 3 concrete function directly leaves the
        # weights as uninitialised resource variables (the model then outputs NaN).
        signature = [tf.TensorSpec([1, None, None, 3], tf.float32, name="slide")]
        model.export(tmp, format="tf_saved_model", input_signature=signature, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        blob = converter.convert()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="a training run's folder")
    args = parser.parse_args(argv)
    from training.detector.model import build_detector

    model, _ = build_detector(None)
    model.load_weights(args.run / "model.weights.h5")
    print(export_tflite(model, args.run / "model.tflite"))


if __name__ == "__main__":
    main()
