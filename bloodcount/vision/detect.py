"""Find, classify and de-duplicate the cells of one decoded slide: the classical pipeline.

proposals (OpenCV) -> crops -> classifier -> drop background -> NMS -> cells.
Slides larger than a tile go tile by tile (bounded memory) and keep each cell once.
The default pipeline is the dense detector's (:mod:`bloodcount.vision.detect_dense`);
both return :class:`Detections`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bloodcount.vision import CLASSES
from bloodcount.vision.classifier import BACKGROUND
from bloodcount.vision.crops import crop_batch
from bloodcount.vision.geometry import as_boxes, box_areas, iou_matrix, touches_border
from bloodcount.vision.proposals import estimate_cell_radius, find_cells
from bloodcount.vision.tiles import plan_tiles

# Two proposals this alike are one cell: classify it once.
PROPOSAL_IOU = 0.75
# Detections of one class overlapping more than this are one cell (overlapping red cells
# in a thick smear reach IoU ~0.4 between their true boxes).
NMS_IOU = 0.45
# A box mostly inside another of the same class (or holding it) is the same cell.
NMS_CONTAINED = 0.8


class CropClassifier(Protocol):
    """What the pipeline needs of a classifier (the LiteRT one, or a test double)."""

    classes: tuple[str, ...]
    input_size: int

    def predict(self, crops: np.ndarray) -> np.ndarray: ...


@dataclass
class Detections:
    """Cells of one slide: boxes (N x 4), label index into CLASSES, 3-class and raw probabilities."""

    boxes: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    background: np.ndarray
    edge: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    # The red-cell radius (original px) the slide was analysed at: the slide checks read it.
    radius: float | None = None


def _dedupe_proposals(boxes: np.ndarray) -> np.ndarray:
    """Drop near-identical proposals (first one wins) before paying to classify them."""
    if len(boxes) < 2:
        return boxes
    ious = iou_matrix(boxes, boxes)
    keep = np.ones(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        if keep[i]:
            dup = ious[i] > PROPOSAL_IOU
            dup[: i + 1] = False
            keep &= ~dup
    return boxes[keep]


def suppress(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices kept by per-class NMS with a containment rule, most confident first."""
    order = np.argsort(-scores, kind="stable")
    ious = iou_matrix(boxes, boxes)
    areas = np.maximum(box_areas(boxes), 1e-9)
    inter = ious * (areas[:, None] + areas[None, :]) / (1.0 + ious)
    # Share of the smaller box inside the larger: a fragment, or a cell's pallor ring.
    contained = inter / np.minimum(areas[:, None], areas[None, :])
    keep: list[int] = []
    dropped = np.zeros(len(boxes), dtype=bool)
    for i in order:
        if dropped[i]:
            continue
        keep.append(int(i))
        same = labels == labels[i]
        dropped |= same & ((ious[i] > NMS_IOU) | (contained[i] > NMS_CONTAINED))
    return np.asarray(keep, dtype=np.int64)


def _classify(image: np.ndarray, boxes: np.ndarray, classifier: CropClassifier):
    """Crop and classify; return boxes kept as cells with label ids and probabilities."""
    crops = crop_batch(image, [tuple(b) for b in boxes], classifier.input_size)
    raw = classifier.predict(crops)
    cols = [classifier.classes.index(c) for c in CLASSES]
    cell_probs = raw[:, cols]
    bg_col = classifier.classes.index(BACKGROUND) if BACKGROUND in classifier.classes else None
    background = raw[:, bg_col] if bg_col is not None else np.zeros(len(raw), np.float32)
    # A crop is a cell when no cell class is less likely than "background".
    is_cell = cell_probs.max(axis=1) > background
    total = np.maximum(cell_probs.sum(axis=1, keepdims=True), 1e-9)
    probs = cell_probs / total
    return boxes[is_cell], probs.argmax(axis=1)[is_cell], probs[is_cell], background[is_cell]


def detect_cells(
    image: np.ndarray, classifier: CropClassifier, tile_size: int = 2048
) -> Detections:
    """Every cell of an RGB uint8 slide, in original pixel coordinates."""
    h, w = image.shape[:2]
    timings = {"find": 0.0, "classify": 0.0, "merge": 0.0}
    t0 = time.perf_counter()
    radius = estimate_cell_radius(image)
    timings["find"] += time.perf_counter() - t0
    tiles = plan_tiles(w, h, tile_size, overlap=int(np.ceil(4 * radius)))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for tile in tiles:
        t0 = time.perf_counter()
        view = image[tile.y0 : tile.y1, tile.x0 : tile.x1]
        boxes = _dedupe_proposals(find_cells(view, radius).boxes)
        t1 = time.perf_counter()
        # Crop from the whole slide, so a cell near a tile edge keeps its real context.
        boxes = boxes + [tile.x0, tile.y0, tile.x0, tile.y0]
        if len(tiles) > 1:
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            boxes = boxes[[tile.owns(cx, cy) for cx, cy in centres]]
        parts.append(_classify(image, boxes, classifier))
        timings["find"] += t1 - t0
        timings["classify"] += time.perf_counter() - t1
    t0 = time.perf_counter()
    boxes = as_boxes(np.vstack([p[0] for p in parts]) if parts else [])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    probs = np.vstack([p[2] for p in parts]).reshape(-1, len(CLASSES))
    background = np.concatenate([p[3] for p in parts])
    keep = suppress(boxes, labels, probs.max(axis=1) if len(probs) else np.zeros(0))
    boxes, labels, probs, background = boxes[keep], labels[keep], probs[keep], background[keep]
    timings["merge"] += time.perf_counter() - t0
    return Detections(
        boxes=boxes,
        labels=labels,
        probabilities=probs,
        background=background,
        edge=touches_border(boxes, w, h),
        timings={k: v * 1000 for k, v in timings.items()},
        radius=radius,
    )
