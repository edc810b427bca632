"""Export to LiteRT (.tflite) and run the exported model; the runtime side imports no TF."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np


def export_tflite(model, path: Path, quantize: bool = False) -> Path:
    """Write ``model`` as a float32-input LiteRT flatbuffer (dynamic-range weights if asked)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        # Keras 3 models convert most reliably through a SavedModel export.
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        blob = converter.convert()
    Path(path).write_bytes(blob)
    return Path(path)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class LiteClassifier:
    """A LiteRT classifier taking raw RGB crops (N x R x R x 3, 0..255) -> probabilities."""

    def __init__(self, model_path: Path, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.size = int(self.input["shape"][1])
        self._batch = -1

    def predict(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Softmax probabilities for each crop, in the model card's class order."""
        outs = []
        for start in range(0, len(crops), batch_size):
            chunk = np.asarray(crops[start : start + batch_size], dtype=self.input["dtype"])
            if len(chunk) != self._batch:
                self.interpreter.resize_tensor_input(self.input["index"], chunk.shape)
                self.interpreter.allocate_tensors()
                self._batch = len(chunk)
            self.interpreter.set_tensor(self.input["index"], chunk)
            self.interpreter.invoke()
            outs.append(self.interpreter.get_tensor(self.output["index"]).copy())
        if not outs:
            return np.zeros((0, int(self.output["shape"][-1])), np.float32)
        return np.concatenate(outs)
