"""Cut a cell out of a slide for the classifier: one function, used by training and inference.

Training and serving must crop identically, or the model sees a different world in
production than it learned on; so both call :func:`crop_cell`.
"""

from __future__ import annotations

import cv2
import numpy as np

# Context around the box, as a fraction of its longer side. A little surrounding plasma
# lets the model tell a whole cell from half a cell or two cells in one box.
CONTEXT = 0.15
MIN_BOX_SIDE = 4


def square_window(
    box: tuple[float, float, float, float], context: float = CONTEXT
) -> tuple[int, int, int]:
    """Centre x, centre y and side of the square window cropped around ``box``."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * context)
    return int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)), max(int(round(side)), 2)


def crop_cell(
    image: np.ndarray, box: tuple[float, float, float, float], size: int, context: float = CONTEXT
) -> np.ndarray:
    """Square crop of ``image`` (H x W x 3 uint8 RGB) around ``box`` resized to ``size``.

    The window is square so a cell keeps its shape; where it leaves the image it is
    filled by reflecting the border, so edge cells look like cells, not black bars.
    """
    cx, cy, side = square_window(box, context)
    half = side // 2
    x0, y0 = cx - half, cy - half
    x1, y1 = x0 + side, y0 + side
    h, w = image.shape[:2]
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x1 - w), max(0, y1 - h)
    window = image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if pad_l or pad_t or pad_r or pad_b:
        window = cv2.copyMakeBorder(window, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REFLECT_101)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(window, (size, size), interpolation=interpolation)


def is_usable_box(box: tuple[float, float, float, float], width: int, height: int) -> bool:
    """False for degenerate boxes (under MIN_BOX_SIDE px a side) or ones wholly off the image."""
    x0, y0, x1, y1 = box
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        return False
    return x1 > 0 and y1 > 0 and x0 < width and y0 < height


def crop_batch(
    image: np.ndarray, boxes: list[tuple[float, float, float, float]], size: int
) -> np.ndarray:
    """Stack of crops (N x size x size x 3 uint8) for many boxes of one image."""
    out = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for i, box in enumerate(boxes):
        out[i] = crop_cell(image, box, size)
    return out
