"""Turn labelled images into classifier samples: crops cut by ``crop_cell``, as at inference."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np

from bloodcount.vision.crops import CONTEXT, crop_cell, is_usable_box
from training.datasets import BACKGROUND, ImageRecord, ReadReport
from training.negatives import jitter_box, sample_negatives

log = logging.getLogger(__name__)

# Background boxes drawn per complete-label image, by kind (see training.negatives).
NEGATIVES_PER_IMAGE = {"random": 2, "shifted": 1, "partial": 2, "merged": 1, "plasma": 1}


@dataclass
class CropSet:
    """Crops (uint8 N x R x R x 3), class indices, and where each crop came from."""

    x: np.ndarray
    y: np.ndarray
    image: list[str] = field(default_factory=list)  # sha256 of the source image
    kind: list[str] = field(default_factory=list)  # "box", "jitter" or a negative kind
    file: list[str] = field(default_factory=list)
    box: list[tuple[float, float, float, float]] = field(default_factory=list)

    def counts(self, classes: tuple[str, ...]) -> dict[str, int]:
        c = Counter(int(v) for v in self.y)
        return {name: c.get(i, 0) for i, name in enumerate(classes)}

    def subset(self, mask: np.ndarray) -> CropSet:
        idx = np.flatnonzero(mask)
        return CropSet(
            self.x[idx],
            self.y[idx],
            [self.image[i] for i in idx],
            [self.kind[i] for i in idx],
            [self.file[i] for i in idx],
            [self.box[i] for i in idx],
        )


def read_rgb(record: ImageRecord, report: ReadReport) -> np.ndarray | None:
    """The image as RGB uint8, or None (recorded) if it cannot be decoded."""
    bgr = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
    if bgr is None:
        report.problem("unreadable image", str(record.image_path), "OpenCV cannot decode it")
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def build_crops(
    records: list[ImageRecord],
    size: int,
    classes: tuple[str, ...],
    *,
    seed: int,
    jitter_copies: int = 0,
    negatives: bool = False,
    context: float = CONTEXT,
    report: ReadReport | None = None,
    border_jitter_copies: int | None = None,
) -> CropSet:
    """Crops of every usable labelled box, ``jitter_copies`` jittered copies of each
    (``border_jitter_copies`` for boxes touching the image edge), and (if ``negatives`` and
    the image's labels are complete) background crops."""
    report = report or ReadReport()
    xs, ys, images, kinds, files, boxes = [], [], [], [], [], []
    index = {name: i for i, name in enumerate(classes)}

    def add(img: np.ndarray, box, label: str, kind: str, record: ImageRecord) -> None:
        xs.append(crop_cell(img, box, size, context))
        ys.append(index[label])
        images.append(record.sha256)
        kinds.append(kind)
        files.append(str(record.image_path))
        boxes.append(tuple(float(v) for v in box))

    for record in records:
        img = read_rgb(record, report)
        if img is None:
            continue
        h, w = img.shape[:2]
        # One generator per image, seeded by its hash: the same crops whatever the order.
        rng = np.random.default_rng([seed, int(record.sha256[:12] or "0", 16)])
        usable = []
        for b in record.boxes:
            if not is_usable_box(b.xyxy, w, h):
                report.problem("degenerate box", str(record.labels_path), f"box {b.xyxy} < 4 px")
                continue
            usable.append(b)
            add(img, b.xyxy, b.label, "box", record)
            at_border = b.x0 <= 2 or b.y0 <= 2 or b.x1 >= w - 2 or b.y1 >= h - 2
            # Edge-cut cells look odd once crop_cell mirrors the border: most errors are there.
            copies = (
                jitter_copies
                if border_jitter_copies is None or not at_border
                else border_jitter_copies
            )
            for _ in range(copies):
                add(img, jitter_box(b.xyxy, rng), b.label, "jitter", record)
        if negatives and BACKGROUND in index and record.complete:
            for box, kind in sample_negatives(
                [b.xyxy for b in record.boxes], w, h, rng, NEGATIVES_PER_IMAGE
            ):
                add(img, box, BACKGROUND, kind, record)
    x = np.stack(xs) if xs else np.zeros((0, size, size, 3), np.uint8)
    return CropSet(x, np.asarray(ys, dtype=np.int64), images, kinds, files, boxes)
