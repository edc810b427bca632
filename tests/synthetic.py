"""Synthetic blood smears with exact ground truth, so counting can be tested without real data.

Red cells are pink discs with a pale centre (some pairs touch or overlap a little), white
cells a pale cytoplasm disc with a lobed purple nucleus, platelets small purple dots; then
blur and noise. ``scale`` sets the magnification (2.0 draws every cell twice as large).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PLASMA = (222, 214, 226)
RBC_RIM = (196, 140, 150)
RBC_PALLOR = (214, 178, 186)
NUCLEUS = (98, 70, 170)
CYTOPLASM = (205, 190, 225)
PLATELET = (140, 100, 190)


@dataclass
class Smear:
    """An RGB uint8 slide and its true boxes/labels."""

    image: np.ndarray
    boxes: np.ndarray
    labels: list[str]

    def count(self, label: str) -> int:
        return self.labels.count(label)


def _free(
    centres: list[tuple[float, float, float]], x: float, y: float, r: float, gap: float
) -> bool:
    return all(np.hypot(x - cx, y - cy) >= (r + cr) * gap for cx, cy, cr in centres)


def make_smear(
    seed: int = 0,
    width: int = 640,
    height: int = 480,
    scale: float = 1.0,
    n_rbc: int = 14,
    n_wbc: int = 1,
    n_platelets: int = 2,
    touching_pairs: int = 2,
    noise: float = 4.0,
) -> Smear:
    """Draw a smear; cells lie wholly inside the image so every one is countable."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = PLASMA
    placed: list[tuple[float, float, float]] = []
    boxes: list[list[float]] = []
    labels: list[str] = []

    def place(r: float, gap: float) -> tuple[float, float] | None:
        for _ in range(400):
            x = rng.uniform(r + 2, width - r - 2)
            y = rng.uniform(r + 2, height - r - 2)
            if _free(placed, x, y, r, gap):
                return x, y
        return None

    def add(x: float, y: float, r: float, label: str) -> None:
        placed.append((x, y, r))
        boxes.append([x - r, y - r, x + r, y + r])
        labels.append(label)

    for _ in range(n_wbc):
        r = 38 * scale * rng.uniform(0.95, 1.1)
        pos = place(r, 1.1)
        if pos is None:
            continue
        x, y = pos
        cv2.circle(img, (int(x), int(y)), int(r), CYTOPLASM, -1, cv2.LINE_AA)
        for k in range(3):  # three overlapping lobes make one nucleus
            a = 2 * np.pi * k / 3 + rng.uniform(0, 1)
            cx, cy = x + 0.35 * r * np.cos(a), y + 0.35 * r * np.sin(a)
            cv2.circle(img, (int(cx), int(cy)), int(0.42 * r), NUCLEUS, -1, cv2.LINE_AA)
        add(x, y, r, "WBC")

    def red_cell(x: float, y: float, r: float) -> None:
        cv2.circle(img, (int(x), int(y)), int(r), RBC_RIM, -1, cv2.LINE_AA)
        cv2.circle(img, (int(x), int(y)), int(0.45 * r), RBC_PALLOR, -1, cv2.LINE_AA)
        add(x, y, r, "RBC")

    for _ in range(touching_pairs):
        r = 24 * scale * rng.uniform(0.9, 1.1)
        pos = place(2.2 * r, 1.05)
        if pos is None:
            continue
        x, y = pos
        a = rng.uniform(0, np.pi)
        d = r * rng.uniform(0.9, 1.0)  # centres 1.8-2 radii apart: touching, slightly overlapping
        red_cell(x - d * np.cos(a), y - d * np.sin(a), r)
        red_cell(x + d * np.cos(a), y + d * np.sin(a), r)
    for _ in range(n_rbc - 2 * touching_pairs):
        r = 24 * scale * rng.uniform(0.9, 1.1)
        pos = place(r, 1.15)
        if pos is not None:
            red_cell(*pos, r)
    for _ in range(n_platelets):
        r = 6 * scale * rng.uniform(0.9, 1.2)
        pos = place(r, 1.5)
        if pos is None:
            continue
        cv2.circle(img, (int(pos[0]), int(pos[1])), int(r), PLATELET, -1, cv2.LINE_AA)
        add(*pos, r, "Platelets")

    img = cv2.GaussianBlur(img, (3, 3), 0)
    img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    return Smear(img, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels)


class ColourClassifier:
    """A test double for the crop classifier that knows the synthetic palette.

    It looks at the middle of each crop: mostly plasma is background, purple with
    cytoplasm around it is a white cell, purple with plasma around it a platelet, else a
    red cell. It lets pipeline tests run where the shipped model is absent.
    """

    classes = ("RBC", "WBC", "Platelets", "background")
    input_size = 48
    info = {"name": "synthetic-colour", "version": "0", "sha256": "0" * 64}

    def predict(self, crops: np.ndarray) -> np.ndarray:
        out = np.zeros((len(crops), 4), np.float32)
        c = self.input_size // 2
        for i, crop in enumerate(crops.astype(np.int16)):
            centre = crop[c - 6 : c + 6, c - 6 : c + 6].reshape(-1, 3)
            ring = crop[c - 18 : c + 18, c - 18 : c + 18].reshape(-1, 3)
            purple = (centre[:, 2] - centre[:, 1] > 60).mean()
            plasma = (np.abs(centre - PLASMA).sum(axis=1) < 30).mean()
            cytoplasm = (np.abs(ring - CYTOPLASM).sum(axis=1) < 30).mean()
            if purple > 0.3:
                k = 1 if cytoplasm > 0.05 else 2
            elif plasma > 0.6:
                k = 3
            else:
                k = 0
            out[i] = 0.02
            out[i, k] = 0.94
        return out
