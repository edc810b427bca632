"""The default pipeline: OpenCV scale estimate -> canonical cell scale -> dense detector -> cells.

The red-cell radius estimate (OpenCV) resizes the slide so cells have the size the
detector was trained on; heatmap peaks become boxes in original pixels. When the red
cells found come out far from canonical size (the estimate fails on some slides that a
white cell dominates), the slide is re-scaled by the measured error and detected again.
Slides larger than a tile go tile by tile and keep each cell once.
"""

from __future__ import annotations

import time

import numpy as np

from bloodcount.vision import CLASSES
from bloodcount.vision.canonical import (
    PAD_MULTIPLE,
    Canonical,
    estimate_slide_radius,
    pad_to,
    padded_size,
    plasma_colour,
    resize,
    scale_factor,
    to_canonical,
)
from bloodcount.vision.dense_detector import DenseDetector, suppress_overlaps
from bloodcount.vision.detect import Detections
from bloodcount.vision.geometry import as_boxes, box_areas, touches_border
from bloodcount.vision.tiles import plan_tiles

# Dense path: tiles overlap by this many red-cell radii (a white cell is ~4.5 radii across).
DENSE_OVERLAP_RADII = 6
# Re-run the detector at a corrected scale when its red cells come out this far off canonical.
SCALE_TOLERANCE = 1.3
REFINE_PASSES = 1
MIN_RED_FOR_SCALE = 4
# Only clear red-cell peaks measure the scale (fixed, so tuning thresholds cannot move it).
SCALE_MIN_SCORE = 0.3


def _dense_pass(
    image: np.ndarray,
    detector: DenseDetector,
    tile_size: int,
    radius: float,
    timings: dict[str, float],
) -> Detections:
    """One run of the detector over the slide (tile by tile) at the scale set by ``radius``."""
    h, w = image.shape[:2]
    t0 = time.perf_counter()
    # inference_scale > 1 shows the network cells a little larger than canonical (tuned).
    work_radius = radius / detector.inference_scale
    factor = scale_factor(work_radius)
    # A slide that shrinks is resampled once, so every tile sees the pixel grid the whole
    # slide would (resampling tile by tile moves borderline cells across the threshold);
    # one that grows goes tile by tile, so memory stays bounded by the tile size.
    once = factor <= 1.0
    source = resize(image, factor) if once else image
    per_px = factor if once else 1.0  # source pixels per original pixel
    colour = plasma_colour(source) if once else None
    sh, sw = source.shape[:2]
    tiles = plan_tiles(
        sw,
        sh,
        max(1, round(tile_size * per_px)),
        overlap=int(np.ceil(DENSE_OVERLAP_RADII * radius * per_px)),
        # The network is not shift-invariant: tiles on the whole slide's 32 px grid see the
        # same pixel phase it does, so borderline cells (small platelets most) score alike.
        align=PAD_MULTIPLE if once else 1,
    )
    timings["scale"] += time.perf_counter() - t0
    boxes, labels, probs, scores = [], [], [], []
    for tile in tiles:
        t0 = time.perf_counter()
        view = source[tile.y0 : tile.y1, tile.x0 : tile.x1]
        if once:
            vh, vw = view.shape[:2]
            canon = Canonical(
                pad_to(view, padded_size(vh), padded_size(vw), colour), 1.0, (vw, vh), work_radius
            )
        else:
            canon = to_canonical(view, work_radius)
        t1 = time.perf_counter()
        # Down to the scale floor at least, so the scale check never depends on tuned thresholds.
        peaks = detector.find(canon.image, np.minimum(detector.thresholds, SCALE_MIN_SCORE))
        cw, ch = canon.size
        centres = (peaks.boxes[:, :2] + peaks.boxes[:, 2:]) / 2
        # A peak in the padding is not on the slide.
        inside = (centres[:, 0] < cw) & (centres[:, 1] < ch)
        found = peaks.boxes[inside] / canon.factor + [tile.x0, tile.y0, tile.x0, tile.y0]
        keep = np.ones(len(found), dtype=bool)
        if len(tiles) > 1:
            c = (found[:, :2] + found[:, 2:]) / 2
            keep = np.array([tile.owns(x, y) for x, y in c], dtype=bool).reshape(-1)
        boxes.append(found[keep] / per_px)
        labels.append(peaks.labels[inside][keep])
        probs.append(peaks.probabilities[inside][keep])
        scores.append(peaks.scores[inside][keep])
        timings["scale"] += t1 - t0
        timings["detect"] += time.perf_counter() - t1
    boxes_all = as_boxes(np.vstack(boxes))
    boxes_all[:, [0, 2]] = np.clip(boxes_all[:, [0, 2]], 0, w)
    boxes_all[:, [1, 3]] = np.clip(boxes_all[:, [1, 3]], 0, h)
    score_all = np.concatenate(scores)
    return Detections(
        boxes=boxes_all,
        labels=np.concatenate(labels).astype(np.int64),
        probabilities=np.vstack(probs).reshape(-1, len(CLASSES)),
        # The detector's doubt that a peak is a cell at all, in the classifier's field.
        background=1.0 - score_all,
        edge=touches_border(boxes_all, w, h),
    )


def red_cell_scale_error(found: Detections, detector: DenseDetector, radius: float) -> float | None:
    """How much larger than canonical the detected red cells came out (None: too few to tell)."""
    red = (found.labels == 0) & ~found.edge & (found.background <= 1.0 - SCALE_MIN_SCORE)
    if red.sum() < MIN_RED_FOR_SCALE:
        return None
    sides = np.sqrt(box_areas(found.boxes[red]))
    expected = detector.canonical_rbc_size / scale_factor(radius)  # in original pixels
    return float(np.median(sides) / expected)


def detect_cells_dense(
    image: np.ndarray,
    detector: DenseDetector,
    tile_size: int = 2048,
    radius: float | None = None,
    refine: int = REFINE_PASSES,
) -> Detections:
    """Every cell of an RGB uint8 slide found by the dense detector, in original pixel coordinates.

    The OpenCV radius estimate sets the scale; when the red cells the detector then finds
    are far from canonical size (the estimate fails on some slides dominated by a white
    cell), the slide is resized by the measured error and detected again.
    """
    timings = {"scale": 0.0, "detect": 0.0}
    t0 = time.perf_counter()
    radius = estimate_slide_radius(image) if radius is None else float(radius)
    timings["scale"] += time.perf_counter() - t0
    found = _dense_pass(image, detector, tile_size, radius, timings)
    for _ in range(refine):
        error = red_cell_scale_error(found, detector, radius)
        if error is None or 1 / SCALE_TOLERANCE <= error <= SCALE_TOLERANCE:
            break
        radius *= error
        found = _dense_pass(image, detector, tile_size, radius, timings)
    keep = (1.0 - found.background) >= detector.thresholds[found.labels]
    if detector.nms_iou is not None:
        # Suppression before the thresholds: a box only ever gives way to a stronger one.
        unique = np.zeros(len(keep), dtype=bool)
        unique[suppress_overlaps(found.boxes, 1.0 - found.background, detector.nms_iou)] = True
        keep &= unique
    return Detections(
        boxes=found.boxes[keep],
        labels=found.labels[keep],
        probabilities=found.probabilities[keep],
        background=found.background[keep],
        edge=found.edge[keep],
        timings={k: v * 1000 for k, v in timings.items()},
        radius=radius,
    )
