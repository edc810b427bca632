"""Box geometry for training samples: IoU, jittered positives and background (negative) boxes.

Negatives are drawn only on images whose labels are complete (TXL-PBC boxes every visible
cell); on BCCD/CBC half the red cells are unlabelled, so a "background" box there could be
a cell. Every negative has IoU < ``NEG_MAX_IOU`` with every labelled box; jittered positives
keep IoU > ``POS_MIN_IOU`` with their own box, leaving a gap where neither is sampled.
"""

from __future__ import annotations

import numpy as np

NEG_MAX_IOU = 0.3
POS_MIN_IOU = 0.7
NEGATIVE_KINDS = ("random", "shifted", "partial", "merged", "plasma")

BoxT = tuple[float, float, float, float]


def iou(box: BoxT, others: np.ndarray) -> np.ndarray:
    """IoU of ``box`` with each row (x0, y0, x1, y1) of ``others``."""
    if len(others) == 0:
        return np.zeros(0)
    others = np.asarray(others, dtype=float)
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def jitter_box(
    box: BoxT, rng: np.random.Generator, min_iou: float = POS_MIN_IOU, tries: int = 20
) -> BoxT:
    """A perturbed copy of ``box`` (shift and scale) with IoU > ``min_iou`` to it."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    for _ in range(tries):
        dx, dy = rng.normal(0, 0.07, 2) * (w, h)
        sw, sh = np.exp(rng.normal(0, 0.08, 2))
        cx, cy = (x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy
        cand = (cx - w * sw / 2, cy - h * sh / 2, cx + w * sw / 2, cy + h * sh / 2)
        if iou(cand, np.array([box]))[0] > min_iou:
            return cand
    return box


def _inside(box: BoxT, width: int, height: int) -> bool:
    # The box centre must be on the image; crop_cell reflects whatever else is off it.
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return 0 <= cx < width and 0 <= cy < height and box[2] - box[0] >= 4 and box[3] - box[1] >= 4


def _candidate(
    kind: str, boxes: np.ndarray, width: int, height: int, rng: np.random.Generator
) -> BoxT | None:
    ref = boxes[rng.integers(len(boxes))]
    w, h = ref[2] - ref[0], ref[3] - ref[1]
    if kind == "random":  # a cell-sized box anywhere
        s = np.exp(rng.uniform(-0.3, 0.3))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        return (cx - w * s / 2, cy - h * s / 2, cx + w * s / 2, cy + h * s / 2)
    if kind in ("shifted", "partial"):
        # "partial" straddles a cell edge (covers part of it); "shifted" slides further off.
        lo, hi = (0.55, 0.8) if kind == "partial" else (0.8, 1.3)
        angle = rng.uniform(0, 2 * np.pi)
        d = rng.uniform(lo, hi)
        dx, dy = np.cos(angle) * d * w, np.sin(angle) * d * h
        return (ref[0] + dx, ref[1] + dy, ref[2] + dx, ref[3] + dy)
    if kind == "merged":  # one box over two neighbouring cells
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        dist = np.hypot(*(centres - centres[rng.integers(len(boxes))]).T)
        order = np.argsort(dist)
        if len(order) < 2:
            return None
        a, b = boxes[order[0]], boxes[order[1 + rng.integers(min(6, len(order) - 1))]]
        return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    if kind == "plasma":  # a small box on empty plasma or debris, touching no cell
        s = rng.uniform(0.15, 0.5) * max(w, h)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        return (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
    raise ValueError(kind)


def sample_negatives(
    boxes: list[BoxT],
    width: int,
    height: int,
    rng: np.random.Generator,
    per_kind: dict[str, int],
    tries: int = 30,
) -> list[tuple[BoxT, str]]:
    """Background boxes of each kind with IoU < NEG_MAX_IOU to every labelled box.

    ``plasma`` boxes must not overlap any labelled box at all.
    """
    arr = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if len(arr) == 0:
        return []
    out: list[tuple[BoxT, str]] = []
    for kind, n in per_kind.items():
        got = 0
        for _ in range(n * tries):
            if got >= n:
                break
            cand = _candidate(kind, arr, width, height, rng)
            if cand is None or not _inside(cand, width, height):
                continue
            overlaps = iou(cand, arr)
            limit = 1e-9 if kind == "plasma" else NEG_MAX_IOU
            if overlaps.max() < limit:
                out.append((tuple(float(v) for v in cand), kind))
                got += 1
    return out
