"""The shipped dense cell detector, run with LiteRT, and the decoding of its heatmaps into cells.

The network (``training/detector``) maps a slide at the canonical cell scale to, every 4
pixels, three class-centre heatmaps (RBC, WBC, Platelets), a box size and a sub-cell
centre offset. A cell is a local maximum (3x3) of the strongest class heatmap above that
class's threshold (tuned on the validation side, stored in ``card.json``).

A card may list ``members``: more networks (``member-N.tflite``, each with its sha256) whose
outputs are averaged with ``model.tflite``'s. ``training.detector.ship --member`` writes
such a folder; the shipped detector is a single network (see training/README.md for why).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bloodcount.config import DEFAULT_DETECTOR_DIR as DETECTOR_DIR
from bloodcount.vision import CLASSES
from bloodcount.vision.canonical import CANONICAL_RBC_SIZE
from bloodcount.vision.classifier import ModelError, read_model_dir

CARD_KEYS = (
    "name",
    "version",
    "sha256",
    "classes",
    "stride",
    "size_unit",
    "canonical_radius",
    "thresholds",
)
# Interpreters kept per input shape: slides of one lab share a few shapes, and re-allocating
# tensors for every slide would cost more than the network itself.
SHAPE_CACHE = 4


class DetectorError(ModelError):
    """The detector folder is missing, incomplete or does not match its card."""


@dataclass
class Peaks:
    """Decoded cells in network-input pixels: boxes (N x 4), class ids, 3-class probabilities, peak scores."""

    boxes: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    scores: np.ndarray


def decode_peaks(
    output: np.ndarray, thresholds: np.ndarray, stride: int = 4, size_unit: float = 16.0
) -> Peaks:
    """Cells from one H x W x 7 network output (heatmaps, size, offset), in input pixels.

    Peaks are found on the maximum over classes, so one cell gives one detection even
    where two class heatmaps both light up; its class is the strongest heatmap there.
    """
    heat = np.ascontiguousarray(output[..., :3], dtype=np.float32)
    # Channel by channel: the same values as heat.max(axis=2), ~15x faster on 3 channels.
    strongest = np.maximum(np.maximum(heat[..., 0], heat[..., 1]), heat[..., 2])
    labels_map = heat.argmax(axis=2)
    pooled = cv2.dilate(strongest, np.ones((3, 3), np.uint8))
    floor = np.asarray(thresholds, np.float32)[labels_map]
    ys, xs = np.nonzero((strongest >= pooled) & (strongest >= floor))
    labels = labels_map[ys, xs]
    scores = strongest[ys, xs]
    per_class = heat[ys, xs]
    probs = per_class / np.maximum(per_class.sum(axis=1, keepdims=True), 1e-9)
    size = np.maximum(output[ys, xs, 3:5], 0) * size_unit
    cx = (xs + output[ys, xs, 5]) * stride
    cy = (ys + output[ys, xs, 6]) * stride
    boxes = np.stack(
        [cx - size[:, 0] / 2, cy - size[:, 1] / 2, cx + size[:, 0] / 2, cy + size[:, 1] / 2], axis=1
    )
    order = np.argsort(-scores, kind="stable")
    return Peaks(
        boxes[order].astype(np.float64),
        labels[order].astype(np.int64),
        probs[order].astype(np.float64),
        scores[order].astype(np.float64),
    )


def suppress_overlaps(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression over all classes, best score first.

    Two heatmap peaks on one cell (a red cell whose heat has two summits, a cell on a tile
    seam) give two boxes that overlap almost wholly; touching cells overlap far less.
    OpenCV's NMS keeps memory linear in the number of boxes on huge slides.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), np.asarray(scores, np.float32).tolist(), 0.0, iou)
    return np.sort(np.asarray(keep, dtype=np.int64).reshape(-1))


class DenseDetector:
    """A LiteRT interpreter for the dense detector; build it once per process with :meth:`load`."""

    def __init__(
        self,
        model_path: Path,
        card: dict,
        num_threads: int = 1,
        member_paths: list[Path] | tuple[Path, ...] = (),
    ) -> None:
        self.card = card
        if tuple(card["classes"]) != CLASSES:
            raise DetectorError(
                f"{model_path}: card.json classes {card['classes']} are not {list(CLASSES)}"
            )
        self.stride = int(card["stride"])
        self.size_unit = float(card["size_unit"])
        self.canonical_radius = float(card["canonical_radius"])
        # Median red-cell side (sqrt of box area) at the canonical scale in the training data.
        self.canonical_rbc_size = float(card.get("canonical_rbc_size", CANONICAL_RBC_SIZE))
        self.thresholds = np.array([card["thresholds"][c] for c in CLASSES], np.float32)
        # Average the outputs of the slide and its mirror image (the card says whether the
        # thresholds were tuned that way): steadier peaks for borderline cells.
        self.flip_average = bool(card.get("flip_average", False))
        # Cells are shown to the network this much larger than canonical (tuned on validation).
        self.inference_scale = float(card.get("inference_scale", 1.0))
        # Peaks whose boxes overlap more than this are one cell (tuned on validation; None: off).
        nms = card.get("nms_iou")
        self.nms_iou = None if nms is None else float(nms)
        # An ensemble: the outputs of model.tflite and of each member network are averaged
        # (each with its own mirror pass when flip_average is on), so one training run's
        # luck on a borderline cell counts for less.
        self._models = [Path(p).read_bytes() for p in (model_path, *member_paths)]
        self._threads = num_threads
        self._interpreters: OrderedDict[tuple[int, int, int], tuple] = OrderedDict()
        # An interpreter is not re-entrant; a thread-pooled worker must take turns.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: str | Path = DETECTOR_DIR, num_threads: int = 1) -> DenseDetector:
        """Load ``model.tflite`` + ``card.json`` from ``model_dir``, checking the sha256."""
        model_path, card = read_model_dir(
            model_dir,
            CARD_KEYS,
            DetectorError,
            "no detector in {dir}: expected model.tflite and card.json",
        )
        members = []
        for entry in card.get("members", []):
            path = model_path.parent / entry["file"]
            if not path.is_file():
                raise DetectorError(
                    f"{model_path.parent}: card.json names member {entry['file']}, absent"
                )
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != entry["sha256"]:
                raise DetectorError(f"{path}: sha256 {digest[:12]}… does not match card.json")
            members.append(path)
        return cls(model_path, card, num_threads=num_threads, member_paths=members)

    @property
    def info(self) -> dict[str, str]:
        """The model identity recorded with every result."""
        return {k: str(self.card[k]) for k in ("name", "version", "sha256")}

    def _interpreter(self, member: int, height: int, width: int) -> tuple[object, int, int]:
        """(interpreter, input index, output index) for one network at one input shape."""
        key = (member, height, width)
        if key in self._interpreters:
            self._interpreters.move_to_end(key)
            return self._interpreters[key]
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=self._models[member], num_threads=self._threads)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, [1, height, width, 3])
        interpreter.allocate_tensors()
        # The details are looked up once: each call builds new dicts, twice per pass.
        entry = (interpreter, index, interpreter.get_output_details()[0]["index"])
        self._interpreters[key] = entry
        if len(self._interpreters) > SHAPE_CACHE * len(self._models):
            self._interpreters.popitem(last=False)
        return entry

    def _run(self, image: np.ndarray, member: int = 0) -> np.ndarray:
        interpreter, index, output = self._interpreter(member, *image.shape[:2])
        interpreter.set_tensor(index, image[None].astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(output)[0].copy()

    def predict(self, image: np.ndarray) -> np.ndarray:
        """The H/stride x W/stride x 7 output for one RGB uint8 image (sides multiples of 32)."""
        with self._lock:
            outs = [self._one(image, m) for m in range(len(self._models))]
        return outs[0] if len(outs) == 1 else np.mean(outs, axis=0, dtype=np.float32)

    def _one(self, image: np.ndarray, member: int) -> np.ndarray:
        out = self._run(image, member)
        if not self.flip_average:
            return out
        # cv2.flip: the same pixels as image[:, ::-1], ~15x faster than numpy's strided copy.
        mirrored = self._run(cv2.flip(image, 1), member)[:, ::-1]
        merged = (out + mirrored) / 2
        # A mirrored x offset d inside a cell is 1 - d in the original cell.
        merged[..., 5] = (out[..., 5] + 1.0 - mirrored[..., 5]) / 2
        return merged

    def find(self, image: np.ndarray, thresholds: np.ndarray | None = None) -> Peaks:
        """Cells of one canonical-scale image (padded to multiples of 32), in its pixels."""
        t = self.thresholds if thresholds is None else thresholds
        return decode_peaks(self.predict(image), t, self.stride, self.size_unit)
