"""Bring a slide to the detector's canonical cell scale: the OpenCV first stage of the dense path.

Labs image at different magnifications (Raabin's red cells are about twice BCCD's), so the
slide is resized until its estimated red-cell radius is ``CANONICAL_RADIUS`` pixels, then
padded to a multiple of ``PAD_MULTIPLE`` with its own plasma colour (empty glass, not a
dark edge that could look like a cell). Training uses these same functions, so the
detector sees at serving time exactly the scale and padding it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bloodcount.vision.proposals import at_least_percentile, estimate_cell_radius

# Red-cell inscribed radius (px) after resizing: red cells ~34 px across, platelets ~13.
CANONICAL_RADIUS = 16.0
# Median side (sqrt of box area) of a labelled red cell over the OpenCV radius estimate,
# measured on TXL-PBC: 2.30 (Raabin), 2.34 (PBC), 2.39 (BCCD). So a red cell at the
# canonical scale is about this many pixels across:
RBC_SIDE_PER_RADIUS = 2.34
CANONICAL_RBC_SIZE = RBC_SIDE_PER_RADIUS * CANONICAL_RADIUS
# The network downsamples by 16 and upsamples back; 32 keeps every level aligned.
PAD_MULTIPLE = 32
# Never blow a slide up or shrink it beyond this (a wrong estimate must stay bounded).
MIN_FACTOR, MAX_FACTOR = 0.1, 2.0


# The radius estimate works on a ~160 x 120 probe; on a large slide that probe would shrink
# cells to a few pixels, so it looks at slide-sized windows of this size instead.
WINDOW = (640, 480)


@dataclass(frozen=True)
class Canonical:
    """A slide resized by ``factor`` (``size`` = width, height before padding) and padded."""

    image: np.ndarray
    factor: float
    size: tuple[int, int]
    radius: float


def scale_factor(radius: float) -> float:
    """Resize factor that brings a red-cell radius of ``radius`` px to the canonical one."""
    return float(np.clip(CANONICAL_RADIUS / max(radius, 1e-6), MIN_FACTOR, MAX_FACTOR))


def radius_in_range(radius: float) -> bool:
    """Whether a slide with this red-cell radius (px) can be brought to the canonical scale."""
    return MIN_FACTOR <= CANONICAL_RADIUS / max(radius, 1e-6) <= MAX_FACTOR


def plasma_colour(image: np.ndarray) -> tuple[int, int, int]:
    """Per-channel median of the brightest fifth of pixels: the glass between cells."""
    pixels = image.reshape(-1, 3)
    if len(pixels) > 4096:  # a sample is plenty for a median, and keeps this ~0.1 ms
        pixels = pixels[:: len(pixels) // 4096]
    # Channel by channel: numpy's sum over a 3-wide axis is several times slower.
    total = pixels[:, 0].astype(np.int32) + pixels[:, 1] + pixels[:, 2]
    bright = pixels[at_least_percentile(total, 80)]
    return tuple(int(v) for v in np.median(bright, axis=0))


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` scaled by ``factor`` (area interpolation when shrinking)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


def pad_to(image: np.ndarray, height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """``image`` padded at the bottom and right to ``height`` x ``width`` with ``colour``."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_CONSTANT, value=colour)


def padded_size(n: int, multiple: int = PAD_MULTIPLE) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def estimate_slide_radius(image: np.ndarray) -> float:
    """Red-cell radius (px) of a slide of any size: the median over up to five windows."""
    h, w = image.shape[:2]
    ww, wh = WINDOW
    if h * w <= 2 * ww * wh:
        return estimate_cell_radius(image)
    # The centre and the centres of the four quadrants, clipped to the slide.
    centres = [(w / 2, h / 2)] + [(w * fx, h * fy) for fx in (0.25, 0.75) for fy in (0.25, 0.75)]
    estimates = []
    for cx, cy in centres:
        x0 = int(np.clip(cx - ww / 2, 0, max(w - ww, 0)))
        y0 = int(np.clip(cy - wh / 2, 0, max(h - wh, 0)))
        estimates.append(estimate_cell_radius(image[y0 : y0 + wh, x0 : x0 + ww]))
    return float(np.median(estimates))


def to_canonical(image: np.ndarray, radius: float | None = None) -> Canonical:
    """Resize an RGB uint8 slide to the canonical cell scale and pad it for the network."""
    radius = estimate_slide_radius(image) if radius is None else float(radius)
    factor = scale_factor(radius)
    small = resize(image, factor)
    h, w = small.shape[:2]
    padded = pad_to(small, padded_size(h), padded_size(w), plasma_colour(small))
    return Canonical(image=padded, factor=factor, size=(w, h), radius=radius)
