"""Class-agnostic cell proposals with OpenCV: where the cells are, not what they are.

The slide is analysed at a reduced resolution chosen from its own estimated red-cell
size, so a slide at another magnification (Raabin's cells are twice BCCD's) is seen at
the same working scale and the same size and shape filters apply.

Two kinds of proposal come out:
* red-cell candidates: the stained-cell mask (darker or more coloured than the plasma),
  pallor holes filled, split into single cells by distance transform + watershed;
* stained blobs: strongly purple regions (nuclei and platelets), grouped so a lobed
  nucleus is one proposal, and grown a little because a white cell's box includes its
  cytoplasm.
The classifier then names each proposal or rejects it as background.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Red-cell inscribed radius, in working pixels, that every slide is resized to.
WORK_RADIUS = 14.0
# Pixels at which the scale is estimated (about 1/4 of a 640 x 480 slide).
PROBE_PIXELS = 160 * 120
# Purple score (Lab a up + b down against the plasma) above which a pixel is nucleus
# or platelet: measured ~55-90 on nuclei/platelets and ~8-25 on red cells in all 3 sources.
PURPLE_THRESHOLD = 40
# Platelets stain paler than nuclei; small blobs are looked for at a lower level.
PLATELET_THRESHOLD = 28
# A white cell's box is its nucleus's grown by this (median 1.03-1.18 across sources).
NUCLEUS_TO_CELL = 1.12
PLATELET_GROW = 1.25
DEFAULT_RADIUS = 48.0
MIN_LEVEL = 12.0
USE_HOUGH = True
HOUGH_MIN_DIST = 0.7
HOUGH_CANNY = 60
HOUGH_VOTES = 8


@dataclass(frozen=True)
class Proposals:
    """Candidate boxes (N x 4, original pixels), their kind (0 red-cell, 1 stained blob) and scale."""

    boxes: np.ndarray
    kinds: np.ndarray
    cell_radius: float


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    if abs(factor - 1.0) < 1e-3:
        return image
    h, w = image.shape[:2]
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def at_least_percentile(values: np.ndarray, q: float) -> np.ndarray:
    """``values >= np.percentile(values, q)`` for an integer array, from two order statistics.

    Exactly numpy's answer (linear interpolation): between two different integers the
    percentile lies strictly inside, so ">=" it means "> the lower one". Two partitions
    instead of numpy's general path: this runs on every slide, twice.
    """
    flat = values.ravel()
    position = q / 100 * (flat.size - 1)
    lo = int(np.floor(position))
    if position == lo or lo + 1 >= flat.size:
        return values >= np.partition(flat, lo)[lo]
    part = np.partition(flat, (lo, lo + 1))
    below, above = part[lo], part[lo + 1]
    return values >= below if below == above else values > below


def _plasma_lab(lab: np.ndarray) -> np.ndarray:
    """Median Lab colour of the brightest fifth of the slide: the plasma between cells."""
    bright = at_least_percentile(lab[..., 0], 80)
    return np.median(lab[bright], axis=0)


def _masks(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stained-cell mask (holes filled), purple mask and pale-purple mask, all uint8 0/255."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.int16)
    plasma = _plasma_lab(lab)
    # Red cells differ from plasma in lightness on BCCD/PBC and in hue on Raabin: use both.
    diff = (
        (plasma[0] - lab[..., 0])
        + np.abs(lab[..., 1] - plasma[1])
        + np.abs(lab[..., 2] - plasma[2])
    )
    diff = np.clip(diff, 0, 255).astype(np.uint8)
    purple = (lab[..., 1] - plasma[1]) + (plasma[2] - lab[..., 2])
    purple_mask = (purple > PURPLE_THRESHOLD).astype(np.uint8) * 255
    cells = (diff > _valley_threshold(diff[purple_mask == 0])).astype(np.uint8) * 255
    cells |= purple_mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    cells = cv2.morphologyEx(cells, cv2.MORPH_OPEN, kernel)
    pale = (purple > PLATELET_THRESHOLD).astype(np.uint8) * 255
    return _fill_holes(cells), purple_mask, pale


def _valley_threshold(values: np.ndarray) -> float:
    """Deepest point of the histogram between the plasma peak and the red-cell peak.

    Otsu splits a three-mode histogram (plasma, faint red cells, dark stain) too high and
    loses pale cells; the valley just above the plasma peak keeps them.
    """
    hist = np.bincount(values.ravel(), minlength=256)[:256].astype(np.float64)
    hist = np.convolve(hist, np.ones(7) / 7, mode="same")
    otsu, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    otsu = int(otsu)
    plasma_peak = int(np.argmax(hist[: otsu + 1]))
    cell_peak = otsu + int(np.argmax(hist[otsu:]))
    if cell_peak - plasma_peak < 4:
        return max(float(otsu), MIN_LEVEL)
    valley = plasma_peak + int(np.argmin(hist[plasma_peak : cell_peak + 1]))
    # An empty slide has no second peak; never call faint noise a cell.
    return max(float(valley), MIN_LEVEL)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed holes (red-cell central pallor) in a 0/255 mask."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 255, thickness=cv2.FILLED)
    return filled


def _peaks(dist: np.ndarray, min_value: float, spacing: int) -> np.ndarray:
    """Mask of local maxima of ``dist`` at least ``min_value`` high, ``spacing`` px apart."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * spacing + 1, 2 * spacing + 1))
    dilated = cv2.dilate(dist, k)
    return ((dist >= dilated - 1e-3) & (dist >= min_value)).astype(np.uint8)


def estimate_cell_radius(image: np.ndarray) -> float:
    """Typical red-cell inscribed radius in original pixels, from distance-transform peaks."""
    h, w = image.shape[:2]
    factor = min(1.0, float(np.sqrt(PROBE_PIXELS / max(h * w, 1))))
    small = _resize(image, factor)
    cells, _, _ = _masks(small)
    dist = cv2.distanceTransform(cells, cv2.DIST_L2, 3)
    peak_values = dist[_peaks(dist, 2.0, 3) > 0]
    if len(peak_values) < 3:
        return DEFAULT_RADIUS
    # Upper half of the peaks: small peaks are platelets, noise and neck points.
    radius = float(np.median(peak_values[peak_values >= np.median(peak_values)])) / factor
    return float(np.clip(radius, 4.0, 0.25 * min(h, w) / factor if factor else 1e6))


def _watershed_boxes(cells: np.ndarray, radius: float) -> np.ndarray:
    """Split the stained-cell mask into single cells; one box per watershed basin."""
    dist = cv2.distanceTransform(cells, cv2.DIST_L2, 3)
    peaks = _peaks(dist, 0.45 * radius, max(2, int(0.6 * radius)))
    n_markers, markers = cv2.connectedComponents(peaks)
    if n_markers <= 1:
        return np.zeros((0, 4))
    markers = markers.astype(np.int32)
    markers[cells == 0] = n_markers  # one extra label for the plasma
    relief = cv2.normalize(-dist, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    cv2.watershed(cv2.merge([relief, relief, relief]), markers)
    markers[markers == n_markers] = 0
    markers[markers < 0] = 0
    boxes = []
    min_area = np.pi * (0.35 * radius) ** 2
    for label, (x, y, w, h, area) in enumerate(_stats(markers, n_markers)):
        if label == 0 or area < min_area:
            continue
        boxes.append([x, y, x + w, y + h])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _stats(markers: np.ndarray, n_labels: int) -> np.ndarray:
    """Bounding box (x, y, w, h) and area of every label 0..n_labels-1 of an int32 label map."""
    ys, xs = np.nonzero(markers > 0)
    labels = markers[ys, xs]
    out = np.zeros((n_labels, 5), dtype=np.int64)
    if len(labels) == 0:
        return out
    big = np.iinfo(np.int64).max
    x0 = np.full(n_labels, big)
    y0 = np.full(n_labels, big)
    x1 = np.full(n_labels, -1)
    y1 = np.full(n_labels, -1)
    np.minimum.at(x0, labels, xs)
    np.minimum.at(y0, labels, ys)
    np.maximum.at(x1, labels, xs)
    np.maximum.at(y1, labels, ys)
    area = np.bincount(labels, minlength=n_labels)
    present = area > 0
    out[present, 0] = x0[present]
    out[present, 1] = y0[present]
    out[present, 2] = x1[present] - x0[present] + 1
    out[present, 3] = y1[present] - y0[present] + 1
    out[:, 4] = area
    return out


def _blob_boxes(purple: np.ndarray, radius: float, nuclei: bool) -> np.ndarray:
    """Boxes of purple blobs: lobes of one nucleus are joined, each blob grown to its cell."""
    k = max(3, int(0.3 * radius) | 1)
    joined = cv2.morphologyEx(
        purple, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    n, _, stats, _ = cv2.connectedComponentsWithStats(joined)
    boxes = []
    min_area = np.pi * (0.08 * radius) ** 2
    nucleus_area = np.pi * (0.6 * radius) ** 2
    for x, y, w, h, area in stats[1:]:
        if area < min_area:
            continue
        is_nucleus = area >= nucleus_area
        if is_nucleus != nuclei:
            continue
        grow = NUCLEUS_TO_CELL if is_nucleus else PLATELET_GROW
        cx, cy = x + w / 2, y + h / 2
        hw, hh = w * grow / 2, h * grow / 2
        boxes.append([cx - hw, cy - hh, cx + hw, cy + hh])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _circle_boxes(image: np.ndarray, cells: np.ndarray, radius: float) -> np.ndarray:
    """Boxes of Hough circles of red-cell size: finds overlapping cells the watershed merges."""
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    circles = cv2.HoughCircles(
        gray,
        cv2.HOUGH_GRADIENT,
        dp=1,
        minDist=max(2.0, HOUGH_MIN_DIST * radius),
        param1=HOUGH_CANNY,
        param2=HOUGH_VOTES,
        minRadius=max(2, int(0.65 * radius)),
        maxRadius=max(3, int(1.35 * radius)),
    )
    if circles is None:
        return np.zeros((0, 4))
    c = circles[0]
    # A circle centred on plasma is a gap between cells, not a cell.
    xi = np.clip(c[:, 0].astype(int), 0, cells.shape[1] - 1)
    yi = np.clip(c[:, 1].astype(int), 0, cells.shape[0] - 1)
    c = c[cells[yi, xi] > 0]
    return np.stack(
        [c[:, 0] - c[:, 2], c[:, 1] - c[:, 2], c[:, 0] + c[:, 2], c[:, 1] + c[:, 2]], axis=1
    )


def find_cells(image: np.ndarray, cell_radius: float | None = None) -> Proposals:
    """Propose cell boxes in an RGB uint8 slide; ``cell_radius`` (px) skips the estimate."""
    h, w = image.shape[:2]
    radius = estimate_cell_radius(image) if cell_radius is None else float(cell_radius)
    factor = min(1.0, WORK_RADIUS / radius)
    small = _resize(image, factor)
    cells, purple, pale = _masks(small)
    work_radius = radius * factor
    red = _watershed_boxes(cells, work_radius)
    if USE_HOUGH:
        red = np.vstack([red, _circle_boxes(small, cells, work_radius)])
    blobs = np.vstack(
        [_blob_boxes(purple, work_radius, True), _blob_boxes(pale, work_radius, False)]
    )
    boxes = np.vstack([red, blobs]) / factor
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    kinds = np.r_[np.zeros(len(red), np.int8), np.ones(len(blobs), np.int8)]
    return Proposals(boxes=boxes, kinds=kinds, cell_radius=radius)
