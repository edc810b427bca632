"""Training data for the dense detector: TXL-PBC slides at the canonical cell scale, augmented.

Only TXL-PBC labels are used as complete labels (txl-bccd, txl-pbc, txl-raabin): they box
every visible cell. BCCD/CBC label about half the red cells and would teach the detector to
ignore the rest; :mod:`training.detector.partial` can add BCCD-only slides for white cells and
platelets alone, with ignore regions where their labels may be missing (``loss_weights``).
Each slide is brought to the canonical scale, half the time as serving does it (the OpenCV
radius estimate, :mod:`bloodcount.vision.canonical`) and half the time from its labelled
red-cell size (the scale the serving code's refinement pass aims at), then scale-jittered,
cropped, flipped, rotated and colour-jittered; targets are CenterNet's: Gaussian centre heatmaps per class, box
size and sub-cell centre offset at the centres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bloodcount.vision import CLASSES
from bloodcount.vision.canonical import RBC_SIDE_PER_RADIUS, plasma_colour, resize, scale_factor
from bloodcount.vision.proposals import estimate_cell_radius
from training.datasets import COMPLETE_SOURCES, default_data_dir, file_sha256, read_labels
from training.split import load_split

STRIDE = 4
SIZE_UNIT = 16.0  # box sides are regressed in units of 16 canonical px (~2 for a red cell)
# A crop that cuts a cell keeps it (TXL boxes border-cut cells) if this much of it shows.
MIN_VISIBLE = 0.3
GAUSSIAN_ALPHA = 0.54  # TTFNet's elliptical Gaussian: sigma = alpha * side / 6
LABELLED_SCALE_SHARE = 0.5
SCALE_JITTER = 1.3  # scale multiplied by a log-uniform factor in [1/1.3, 1.3]
MIN_RED_FOR_SCALE = 4
PLATELET_WEIGHT = 3.0  # slides holding platelets (the rarest class) are drawn this much more often


@dataclass
class Slide:
    """One training slide (original pixels), boxes (N x 4), class ids, glass colour and its two
    canonical-scale factors: from the OpenCV estimate and from the labelled red cells.

    A slide whose labels are incomplete (:mod:`training.detector.partial`) also says where its
    missing labels may be: whole classes (``ignored_classes``) and regions of one class
    (``ignore_boxes`` with ``ignore_labels``) where the heatmap loss learns nothing, rather
    than learning that an unboxed cell is background. Complete slides leave them empty.
    """

    name: str
    source: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    colour: tuple[int, int, int]
    estimated_factor: float
    labelled_factor: float
    ignore_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ignore_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ignored_classes: tuple[int, ...] = ()


def txl_records(side: str, data_dir: Path | None = None, split_path: Path | None = None):
    """TXL-PBC records (complete labels) on ``side`` of the split manifest."""
    txl = Path(data_dir or default_data_dir()) / "txl-pbc" / "train"
    wanted = {e["sha256"] for e in load_split(split_path)["images"] if e["side"] == side}
    records = read_labels("yolo", txl / "labels", txl / "images")
    return [
        r for r in records if r.source in COMPLETE_SOURCES and file_sha256(r.image_path) in wanted
    ]


def parse_source_weights(specs: list[str], sources) -> dict[str, float]:
    """``["txl-bccd=3", ...]`` as {source: weight}; an unknown source or a bad weight is an error."""
    known = sorted(set(sources))
    weights: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or name not in known:
            raise ValueError(
                f"--source-weight {spec!r}: expected SOURCE=WEIGHT, SOURCE one of {known}"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"--source-weight {spec!r}: {value!r} is not a number") from None
        if not weights[name] > 0:
            raise ValueError(f"--source-weight {spec!r}: the weight must be above 0")
    return weights


def load_slide(record) -> Slide:
    """Decode a record and work out its canonical-scale factors."""
    image = cv2.cvtColor(cv2.imread(str(record.image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    estimated = scale_factor(estimate_cell_radius(image))
    boxes = np.array([b.xyxy for b in record.boxes], np.float32).reshape(-1, 4)
    labels = np.array([CLASSES.index(b.label) for b in record.boxes], np.int64)
    h, w = image.shape[:2]
    inner = (
        (labels == 0)
        & (boxes[:, 0] > 1)
        & (boxes[:, 1] > 1)
        & (boxes[:, 2] < w - 1)
        & (boxes[:, 3] < h - 1)
    )
    sides = np.sqrt(np.prod(boxes[inner, 2:] - boxes[inner, :2], axis=1))
    labelled = (
        scale_factor(float(np.median(sides)) / RBC_SIDE_PER_RADIUS)
        if len(sides) >= MIN_RED_FOR_SCALE
        else estimated
    )
    return Slide(
        record.image_path.name,
        record.source,
        image,
        boxes,
        labels,
        plasma_colour(image),
        estimated,
        labelled,
    )


def _colour_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stain and illumination differences between labs: hue, saturation, brightness, gains."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-10, 10)) % 180
    hsv[..., 1] *= rng.uniform(0.7, 1.3)
    hsv[..., 2] *= rng.uniform(0.8, 1.15)
    rgb = cv2.cvtColor(np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8), cv2.COLOR_HSV2RGB)
    gains = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    contrast = rng.uniform(0.85, 1.15)
    out = (rgb.astype(np.float32) - 128) * contrast + 128
    return np.clip(out * gains, 0, 255).astype(np.uint8)


def augment(
    slide: Slide, crop: int, rng: np.random.Generator, focus: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random ``crop`` x ``crop`` view: scale (+ jitter), crop (pad with glass), flips, rot90, colour.

    With ``focus`` (a box index) the crop window is drawn among those that hold that whole
    box, anywhere inside the window.
    """
    view, boxes, labels, _, _ = augment_with_ignore(slide, crop, rng, focus)
    return view, boxes, labels


def augment_with_ignore(
    slide: Slide, crop: int, rng: np.random.Generator, focus: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`augment`, plus the slide's ignore regions carried through the same transform.

    Ignore regions take no random draws, so a complete slide's crops are exactly those of
    the runs before they existed.
    """
    base = slide.labelled_factor if rng.random() < LABELLED_SCALE_SHARE else slide.estimated_factor
    s = base * float(np.exp(rng.uniform(-np.log(SCALE_JITTER), np.log(SCALE_JITTER))))
    image = resize(slide.image, s)
    boxes = slide.boxes * s
    ignore = slide.ignore_boxes.reshape(-1, 4) * s
    h, w = image.shape[:2]
    canvas = np.empty((max(h, crop), max(w, crop), 3), np.uint8)
    canvas[:] = slide.colour
    # Place a small image anywhere in the canvas, so padding is seen on every side.
    oy, ox = rng.integers(0, canvas.shape[0] - h + 1), rng.integers(0, canvas.shape[1] - w + 1)
    canvas[oy : oy + h, ox : ox + w] = image
    if focus is None:
        y0, x0 = (
            rng.integers(0, canvas.shape[0] - crop + 1),
            rng.integers(0, canvas.shape[1] - crop + 1),
        )
    else:
        fx0, fy0, fx1, fy1 = boxes[focus] + np.array([ox, oy, ox, oy], np.float32)
        y0 = _window_start(fy0, fy1, crop, canvas.shape[0], rng)
        x0 = _window_start(fx0, fx1, crop, canvas.shape[1], rng)
    view = canvas[y0 : y0 + crop, x0 : x0 + crop]
    shift = np.array([ox - x0, oy - y0, ox - x0, oy - y0], np.float32)
    boxes = boxes + shift
    clipped = np.clip(boxes, 0, crop)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    visible = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1)
    keep = (visible >= MIN_VISIBLE * np.maximum(area, 1e-6)) & (
        np.min(clipped[:, 2:] - clipped[:, :2], axis=1) >= 2
    )
    boxes, labels = clipped[keep], slide.labels[keep]
    ignore = np.clip(ignore + shift, 0, crop)
    shown = np.min(ignore[:, 2:] - ignore[:, :2], axis=1) > 0
    ignore, ignore_labels = ignore[shown], slide.ignore_labels[shown]
    if rng.random() < 0.5:
        view = view[:, ::-1]
        boxes, ignore = _mirrored(boxes, crop), _mirrored(ignore, crop)
    for _ in range(int(rng.integers(0, 4))):
        view = np.rot90(view)
        boxes, ignore = _rotated(boxes, crop), _rotated(ignore, crop)
    view = _colour_jitter(np.ascontiguousarray(view), rng)
    return view, boxes.reshape(-1, 4), labels, ignore.reshape(-1, 4), ignore_labels


def _degraded(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A focus blur (sigma 0.5-2 px) or a JPEG re-encoding (quality 30-90), half and half.

    Measured on the held-out slides (docs/robustness.md), these two changes cost the most
    platelets, and without this a network never sees either: the rest of the augmentation
    changes colour, scale and orientation only.
    """
    if rng.random() < 0.5:
        return cv2.GaussianBlur(view, (0, 0), float(rng.uniform(0.5, 2.0)))
    quality = int(rng.integers(30, 91))
    encoded = cv2.imencode(".jpg", view[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])


def _mirrored(boxes: np.ndarray, crop: int) -> np.ndarray:
    """Boxes of a left-right mirrored view."""
    return np.stack([crop - boxes[:, 2], boxes[:, 1], crop - boxes[:, 0], boxes[:, 3]], axis=1)


def _rotated(boxes: np.ndarray, crop: int) -> np.ndarray:
    """Boxes of the view turned 90 degrees counter-clockwise: (x, y) -> (y, crop - x)."""
    return np.stack([boxes[:, 1], crop - boxes[:, 2], boxes[:, 3], crop - boxes[:, 0]], axis=1)


def _window_start(lo: float, hi: float, crop: int, extent: int, rng: np.random.Generator) -> int:
    """A window start in [0, extent - crop] whose window holds [lo, hi] (as much of it as fits)."""
    first = int(np.clip(np.ceil(hi) - crop, 0, extent - crop))
    last = int(np.clip(np.floor(lo), 0, extent - crop))
    return int(rng.integers(min(first, last), max(first, last) + 1))


def targets(
    boxes: np.ndarray, labels: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmap (S x S x 3), regression (S x S x 4: w, h, dx, dy) and centre mask (S x S), S = size / 4."""
    s = size // STRIDE
    heat = np.zeros((s, s, len(CLASSES)), np.float32)
    reg = np.zeros((s, s, 4), np.float32)
    mask = np.zeros((s, s), np.float32)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
    for (x0, y0, x1, y1), label in zip(boxes, labels, strict=True):
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        ix, iy = min(int(cx), s - 1), min(int(cy), s - 1)
        sx = max(0.5, GAUSSIAN_ALPHA * (x1 - x0) / STRIDE / 6)
        sy = max(0.5, GAUSSIAN_ALPHA * (y1 - y0) / STRIDE / 6)
        g = np.exp(-((xs - ix) ** 2) / (2 * sx**2) - ((ys - iy) ** 2) / (2 * sy**2))
        np.maximum(heat[..., label], g, out=heat[..., label])
        reg[iy, ix] = ((x1 - x0) / SIZE_UNIT, (y1 - y0) / SIZE_UNIT, cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return heat, reg, mask


def loss_weights(
    ignore_boxes: np.ndarray, ignore_labels: np.ndarray, ignored_classes: tuple[int, ...], size: int
) -> np.ndarray:
    """Per-class heatmap loss weights (S x S x 3): 0 where a slide's labels may be missing, else 1.

    A grid cell is ignored when any part of it lies in an ignore box; the loss keeps every
    labelled centre whatever its weight (:func:`training.detector.model.losses`).
    """
    s = size // STRIDE
    weights = np.ones((s, s, len(CLASSES)), np.float32)
    weights[..., list(ignored_classes)] = 0.0
    for (x0, y0, x1, y1), label in zip(ignore_boxes, ignore_labels, strict=True):
        c0, r0 = int(x0 // STRIDE), int(y0 // STRIDE)
        c1, r1 = int(np.ceil(x1 / STRIDE)), int(np.ceil(y1 / STRIDE))
        weights[r0:r1, c0:c1, label] = 0.0
    return weights


def batch_at(
    slides: list[Slide],
    batch: int,
    crop: int,
    seed: int,
    index: int,
    platelet_focus: float = 0.0,
    degrade: float = 0.0,
    source_weights: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch number ``index`` of augmented crops: (uint8 images, packed targets).

    Seeded by (seed, index) alone, so the stream is the same whether batches are made in
    order in one process or out of order by a pool of workers. Targets are packed along
    the channel axis (heat 3, box regression 4, centre mask 1, heatmap loss weights 3), as
    :func:`training.detector.model.packed_loss` reads them.

    ``platelet_focus``: the share of crops from slides with platelets whose window is drawn
    around one of them. A 160 px window shows about an eighth of a canonical BCCD slide, so
    a slide's one or two platelets are mostly cropped away; at 0 (1.5.0's recipe) the random
    draws are exactly those of the runs before the option existed.

    ``degrade``: the share of crops then blurred or JPEG-compressed (:func:`_degraded`);
    at 0, again, the draws are those of the runs before the option existed.

    ``source_weights``: slides of these sources are drawn this much more often (on top of
    the platelet weight); sources not named keep 1. None, or all 1, gives the recipe's draws.
    """
    rng = np.random.default_rng([seed, index])
    weights = np.array(
        [
            (PLATELET_WEIGHT if (s.labels == 2).any() else 1.0)
            * (source_weights or {}).get(s.source, 1.0)
            for s in slides
        ]
    )
    idx = rng.choice(len(slides), size=batch, p=weights / weights.sum())
    views, packed = [], []
    for i in idx:
        focus = None
        if platelet_focus > 0 and rng.random() < platelet_focus:
            platelets = np.flatnonzero(slides[i].labels == CLASSES.index("Platelets"))
            focus = int(rng.choice(platelets)) if len(platelets) else None
        view, boxes, labels, ignore, ignore_labels = augment_with_ignore(
            slides[i], crop, rng, focus
        )
        if degrade > 0 and rng.random() < degrade:
            view = _degraded(view, rng)
        heat, reg, mask = targets(boxes, labels, crop)
        weights = loss_weights(ignore, ignore_labels, slides[i].ignored_classes, crop)
        views.append(view)
        packed.append(np.concatenate([heat, reg, mask[..., None], weights], axis=-1))
    return np.stack(views), np.stack(packed)
