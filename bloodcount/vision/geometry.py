"""Box arithmetic shared by detection and evaluation: IoU, non-maximum suppression, clipping.

Boxes are float arrays ``[x0, y0, x1, y1]`` in pixels (x1, y1 exclusive edges).
"""

from __future__ import annotations

import numpy as np


def as_boxes(boxes: object) -> np.ndarray:
    """``boxes`` as an N x 4 float64 array (an empty input gives shape 0 x 4)."""
    arr = np.asarray(boxes, dtype=np.float64)
    return arr.reshape(-1, 4)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Area of each box; degenerate boxes have area 0."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b`` (len(a) x len(b))."""
    a, b = as_boxes(a), as_boxes(b)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    boxes = as_boxes(boxes)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    ious = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(boxes), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= ious[i] > iou_threshold
    return np.asarray(keep, dtype=np.int64)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to the image rectangle."""
    b = as_boxes(boxes).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return b


def touches_border(boxes: np.ndarray, width: int, height: int, margin: float = 1.0) -> np.ndarray:
    """True for boxes within ``margin`` pixels of any image edge."""
    b = as_boxes(boxes)
    return (
        (b[:, 0] <= margin)
        | (b[:, 1] <= margin)
        | (b[:, 2] >= width - margin)
        | (b[:, 3] >= height - margin)
    )


def in_counting_frame(
    boxes: np.ndarray, width: int, height: int, margin: float = 1.0
) -> np.ndarray:
    """True for boxes clear of the right and bottom edges (within ``margin`` px counts as touching).

    The image as an unbiased counting frame: a cell cut by the top or left edge is counted,
    one cut by the right or bottom edge is not, so slides that tile a smear count each
    cell once and the per-slide count is an unbiased estimate of cells per image area.
    """
    b = as_boxes(boxes)
    return (b[:, 2] < width - margin) & (b[:, 3] < height - margin)
