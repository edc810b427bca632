"""Export the dense detector to LiteRT with a resizable (1, H, W, 3) input; no TF at serving time."""

from __future__ import annotations

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
