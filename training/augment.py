"""Crop augmentation in NumPy/OpenCV: the study's geometry plus stain, blur and scale jitter.

One affine warp per crop (rotation, shift, shear, zoom, flips) costs tens of microseconds at
96 px, so augmenting on the fly keeps a 2-core CPU busy training rather than preparing data.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; the defaults are the study's geometry plus colour."""

    rotation_deg: float = 20.0
    shift: float = 0.2
    shear: float = 0.2
    zoom: float = 0.2
    hflip: bool = True
    vflip: bool = True  # cells have no up/down, so this is free extra data
    stain: bool = True  # hue/saturation/brightness/contrast and per-channel gain
    blur_scale: bool = True  # lower resolution or slight defocus, as at other magnifications
    hue: float = 8.0  # OpenCV hue units (180 = full circle)
    saturation: float = 0.3


STUDY = AugmentConfig(vflip=False, stain=False, blur_scale=False)
DEFAULT = AugmentConfig()
# Hue carries the RBC (pink) vs platelet (purple) difference once crop_cell has removed size.
DEFAULT_MILD_STAIN = AugmentConfig(hue=4.0, saturation=0.2)


def _affine(size: int, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    c = size / 2.0
    angle = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    zoom = rng.uniform(1 - cfg.zoom, 1 + cfg.zoom)
    shear = rng.uniform(-cfg.shear, cfg.shear)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lin = rot @ np.array([[1.0, shear], [0.0, 1.0]]) * zoom
    if cfg.hflip and rng.random() < 0.5:
        lin = lin @ np.diag([-1.0, 1.0])
    if cfg.vflip and rng.random() < 0.5:
        lin = lin @ np.diag([1.0, -1.0])
    shift = rng.uniform(-cfg.shift, cfg.shift, 2) * size
    offset = np.array([c, c]) + shift - lin @ np.array([c, c])
    return np.hstack([lin, offset[:, None]])


def _stain(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue, cfg.hue)) % 180
    hsv[..., 1] *= rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    hsv[..., 2] *= rng.uniform(0.8, 1.2)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out *= rng.uniform(0.92, 1.08, 3)  # per-channel gain: a different stain batch or camera
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.8, 1.2) + mean
    return np.clip(out, 0, 255).astype(np.uint8)


def _blur_scale(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    if rng.random() < 0.3:  # seen at lower magnification: down then up
        small = max(8, int(size * rng.uniform(0.4, 0.9)))
        img = cv2.resize(
            cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA),
            (size, size),
            interpolation=cv2.INTER_LINEAR,
        )
    if rng.random() < 0.15:  # slightly out of focus
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    return img


def augment_batch(batch: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Augmented copy (float32, 0..255) of a uint8 batch N x R x R x 3."""
    out = np.empty(batch.shape, dtype=np.float32)
    size = batch.shape[1]
    for i, img in enumerate(batch):
        img = cv2.warpAffine(
            img,
            _affine(size, cfg, rng),
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        if cfg.stain:
            img = _stain(img, cfg, rng)
        if cfg.blur_scale:
            img = _blur_scale(img, rng)
        out[i] = img
    return out
