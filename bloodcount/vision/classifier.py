"""The shipped crop classifier, run with LiteRT (never TensorFlow, so the API stays light).

``card.json`` next to ``model.tflite`` names the output classes, the input size and the
model's identity; every result records that identity.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np

from bloodcount.vision import CLASSES

BATCH = 16
BACKGROUND = "background"


class ModelError(RuntimeError):
    """The classifier folder is missing, incomplete or does not match its card."""


def read_model_dir(
    model_dir: str | Path, keys: tuple[str, ...], error: type[Exception], missing_message: str
) -> tuple[Path, dict]:
    """(model.tflite path, card) of a model folder, its card complete and its sha256 matching.

    Raises ``error``: ``missing_message`` (``{dir}`` filled in) when a file is absent.
    """
    model_dir = Path(model_dir)
    model_path, card_path = model_dir / "model.tflite", model_dir / "card.json"
    if not model_path.is_file() or not card_path.is_file():
        raise error(missing_message.format(dir=model_dir))
    card = json.loads(card_path.read_text())
    missing = [k for k in keys if k not in card]
    if missing:
        raise error(f"{card_path}: missing {missing}")
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    if digest != card["sha256"]:
        raise error(f"{model_path}: sha256 {digest[:12]}… does not match card.json")
    return model_path, card


class Classifier:
    """A LiteRT interpreter for the crop classifier; build it once per process with :meth:`load`."""

    def __init__(self, model_path: Path, card: dict, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.card = card
        self.classes: tuple[str, ...] = tuple(card["classes"])
        missing = [c for c in CLASSES if c not in self.classes]
        if missing:
            raise ModelError(f"{model_path}: card.json classes lack {missing}")
        self.input_size = int(card["input_size"])
        self._interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = 0
        # The interpreter is not re-entrant; a thread-pooled worker must take turns.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: str | Path, num_threads: int = 1) -> Classifier:
        """Load ``model.tflite`` + ``card.json`` from ``model_dir``, checking the sha256."""
        model_path, card = read_model_dir(
            model_dir,
            ("name", "version", "sha256", "classes", "input_size"),
            ModelError,
            "no classifier in {dir}: expected model.tflite and card.json (set BLOODCOUNT_MODEL_PATH)",
        )
        return cls(model_path, card, num_threads=num_threads)

    @property
    def info(self) -> dict[str, str]:
        """The model identity recorded with every result."""
        return {k: str(self.card[k]) for k in ("name", "version", "sha256")}

    def _resize(self, n: int) -> None:
        if n != self._batch:
            r = self.input_size
            self._interpreter.resize_tensor_input(self._input["index"], [n, r, r, 3])
            self._interpreter.allocate_tensors()
            self._batch = n

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities (N x len(classes)) for N x R x R x 3 uint8 RGB crops."""
        n = len(crops)
        out = np.zeros((n, len(self.classes)), dtype=np.float32)
        if n == 0:
            return out
        dtype = self._input["dtype"]
        with self._lock:
            # Fixed-size chunks: re-allocating tensors for every slide's count costs more
            # than classifying a few padding crops.
            for start in range(0, n, BATCH):
                chunk = crops[start : start + BATCH]
                size = BATCH if n > BATCH else n
                batch = np.zeros((size, *crops.shape[1:]), dtype=dtype)
                batch[: len(chunk)] = chunk
                self._resize(size)
                self._interpreter.set_tensor(self._input["index"], batch)
                self._interpreter.invoke()
                out[start : start + len(chunk)] = self._interpreter.get_tensor(
                    self._output["index"]
                )[: len(chunk)]
        return out
