"""The per-slide use case: bytes or a path in, a :class:`SlideResult` out.

The CLI, the batch worker and the tests all call :class:`Analyzer`, so a slide is
analysed the same way everywhere. ``SlideResult.to_dict()`` is the per-slide object of
the ``bloodcount.analysis/v1`` JSON contract (ARCHITECTURE.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bloodcount.config import Settings, load_settings
from bloodcount.slide_warnings import page_warnings, slide_warnings
from bloodcount.vision import CLASSES
from bloodcount.vision.decode import SlideError, decode_image, extra_pages
from bloodcount.vision.geometry import in_counting_frame, touches_border

SCHEMA = "bloodcount.analysis/v1"
# "dense": the learned detector (default); "classical": OpenCV proposals + crop classifier.
METHODS = ("dense", "classical")
DEFAULT_METHOD = "dense"


@dataclass
class Cell:
    """One detected cell; box is [x0, y0, x1, y1] in original pixels."""

    label: str
    confidence: float
    box: list[float]
    probabilities: dict[str, float]
    edge: bool
    review: bool
    background: float = 0.0
    # Inside the unbiased counting frame (not cut by the right or bottom edge).
    frame: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": self.confidence,
            "box": self.box,
            "probabilities": self.probabilities,
            "edge": self.edge,
            "review": self.review,
            "background": self.background,
            "frame": self.frame,
        }


@dataclass
class SlideResult:
    """Outcome of one slide: cells and counts, or status "error" with a one-line reason."""

    file: str
    width: int | None = None
    height: int | None = None
    status: str = "ok"
    error: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CLASSES})
    # The same cells counted in the unbiased counting frame (see Cell.frame).
    frame_counts: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CLASSES})
    cells: list[Cell] = field(default_factory=list)
    # Reasons to look at a counted slide before trusting it (bloodcount.slide_warnings).
    warnings: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # JPEG overlay and display image, made only on request; never part of the JSON.
    overlay: bytes | None = field(default=None, repr=False)
    display: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The per-slide JSON object of the analysis contract."""
        return {
            "file": self.file,
            "width": self.width,
            "height": self.height,
            "status": self.status,
            "error": self.error,
            "counts": dict(self.counts),
            "frame_counts": dict(self.frame_counts),
            "cells": [c.to_dict() for c in self.cells],
            "warnings": [dict(w) for w in self.warnings],
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        }


def open_analyzer(command: str, method: str | None = None) -> Analyzer | None:
    """An Analyzer for a CLI command, or None after printing why the model cannot load."""
    import sys

    from bloodcount.vision.classifier import ModelError

    try:
        return Analyzer(method=method)
    except ModelError as exc:
        print(f"bloodcount {command}: {exc}", file=sys.stderr)
        return None


class Analyzer:
    """Analyses slides with one model loaded once per process.

    ``method`` picks the pipeline: "dense" (the shipped detector, default) or "classical"
    (OpenCV proposals + the crop classifier at ``settings.model_path``). Left unset, an
    injected ``classifier`` (a test double) selects the classical pipeline and an injected
    ``detector`` the dense one.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        classifier: Any = None,
        detector: Any = None,
        method: str | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        if method is None and (classifier is not None or detector is not None):
            # An injected model (a test double) says which pipeline it is for.
            method = "dense" if detector is not None else "classical"
        if method is None:
            method = self.settings.analysis_method or DEFAULT_METHOD
        if method not in METHODS:
            raise ValueError(f"unknown analysis method {method!r}: use one of {', '.join(METHODS)}")
        self.method = method
        self.classifier = self.detector = None
        if method == "classical":
            if classifier is None:
                from bloodcount.vision.classifier import Classifier

                classifier = Classifier.load(self.settings.model_path)
            self.classifier = classifier
        else:
            if detector is None:
                from bloodcount.vision.dense_detector import DenseDetector

                detector = DenseDetector.load(self.settings.detector_path)
            self.detector = detector

    @property
    def model_info(self) -> dict[str, str]:
        """{name, version, sha256} of the model that produced the results."""
        model = self.detector if self.method == "dense" else self.classifier
        return dict(model.info)

    def analyze_image(self, image: np.ndarray, name: str) -> SlideResult:
        """Analyse an already decoded RGB uint8 image."""
        from bloodcount.vision.detect import detect_cells
        from bloodcount.vision.detect_dense import detect_cells_dense

        if self.method == "dense":
            found = detect_cells_dense(image, self.detector, self.settings.tile_size)
        else:
            found = detect_cells(image, self.classifier, self.settings.tile_size)
        h, w = image.shape[:2]
        rounded_boxes = [[round(float(v), 1) for v in box] for box in found.boxes]
        # From the boxes as written, so a reader re-deriving the flag gets the same answer.
        as_written = np.array(rounded_boxes).reshape(-1, 4)
        edges = touches_border(as_written, w, h)
        framed = in_counting_frame(as_written, w, h)
        cells = []
        for rounded, edge, frame, label, probs, bg in zip(
            rounded_boxes,
            edges,
            framed,
            found.labels,
            found.probabilities,
            found.background,
            strict=True,
        ):
            confidence = float(probs[label])
            cells.append(
                Cell(
                    label=CLASSES[int(label)],
                    confidence=round(confidence, 4),
                    box=rounded,
                    probabilities={
                        c: round(float(p), 4) for c, p in zip(CLASSES, probs, strict=True)
                    },
                    edge=bool(edge),
                    review=confidence < self.settings.review_threshold,
                    background=round(float(bg), 4),
                    frame=bool(frame),
                )
            )
        counts = {c: sum(cell.label == c for cell in cells) for c in CLASSES}
        frame_counts = {c: sum(cell.label == c and cell.frame for cell in cells) for c in CLASSES}
        return SlideResult(
            file=name,
            width=w,
            height=h,
            counts=counts,
            frame_counts=frame_counts,
            cells=cells,
            warnings=slide_warnings(counts, [c.review for c in cells], found.radius),
            timings=dict(found.timings),
        )

    def analyze_bytes(
        self, data: bytes, name: str, overlay: bool = False, display: bool = False
    ) -> SlideResult:
        """Decode and analyse one slide; unreadable input gives status "error", never raises.

        With ``overlay`` the result also carries the slide drawn with its boxes (JPEG bytes);
        with ``display``, the slide as analysed, without boxes (JPEG bytes), for a viewer
        that cannot read the original's format.
        """
        t0 = time.perf_counter()
        try:
            image = decode_image(data, self.settings.max_image_pixels)
            decode_ms = (time.perf_counter() - t0) * 1000
            result = self.analyze_image(image, name)
        except SlideError as exc:
            return SlideResult(
                file=name, status="error", error=str(exc), counts={c: 0 for c in CLASSES}
            )
        except MemoryError:
            return SlideResult(
                file=name, status="error", error="not enough memory to analyse this image"
            )
        result.timings = {"decode": decode_ms, **result.timings}
        result.warnings += page_warnings(extra_pages(data))
        if overlay:
            from bloodcount.vision.draw import draw_overlay

            result.overlay = draw_overlay(image, result.cells)
        if display:
            from bloodcount.vision.draw import encode_display

            result.display = encode_display(image)
        return result

    def analyze_path(self, path: str | Path, overlay: bool = False) -> SlideResult:
        """Read a file and analyse it; a file that cannot be read is a per-slide error.

        A file over the API's upload limit is refused after reading one byte more than the
        limit, not the whole of it: a multi-gigabyte scan in a folder would otherwise cost
        its size in memory before the header check could refuse its pixel count.
        """
        limit = self.settings.max_upload_bytes
        try:
            with open(path, "rb") as stream:
                data = stream.read(limit + 1)
        except OSError as exc:
            return SlideResult(
                file=str(path), status="error", error=f"cannot read file: {exc.strerror or exc}"
            )
        if len(data) > limit:
            return SlideResult(
                file=str(path),
                status="error",
                error=f"file is over the limit of {limit:,} bytes (BLOODCOUNT_MAX_UPLOAD_BYTES)",
            )
        return self.analyze_bytes(data, str(path), overlay=overlay)
