"""Classify every labelled box of a dataset with the shipped LiteRT model (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bloodcount.vision.crops import crop_cell, is_usable_box
from training.datasets import ReadReport, read_labels
from training.evaluate import cell_metrics, metrics
from training.export import LiteClassifier
from training.samples import read_rgb

SCHEMA = "bloodcount.classification/v1"


def default_model_dir() -> Path:
    from bloodcount.config import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


def load_card(model_dir: Path) -> dict[str, Any]:
    """The model card, checked against the .tflite it describes."""
    from training.export import sha256_file

    card = json.loads((Path(model_dir) / "card.json").read_text())
    actual = sha256_file(Path(model_dir) / "model.tflite")
    if card.get("sha256") != actual:
        raise ValueError(f"{model_dir}/model.tflite sha256 {actual[:12]} does not match its card")
    return card


def classify_dataset(
    labels: Path,
    fmt: str,
    output: Path,
    images: Path | None = None,
    model_dir: Path | None = None,
    classes: Path | None = None,
    strict: bool = False,
) -> str:
    """Classify each usable labelled box; write the JSON report; return a one-line summary."""
    model_dir = Path(model_dir or default_model_dir())
    card = load_card(model_dir)
    names = tuple(card["classes"])
    lite = LiteClassifier(model_dir / "model.tflite")
    report = ReadReport(strict=strict)
    records = read_labels(fmt, Path(labels), images, report, classes)
    entries: list[dict[str, Any]] = []
    all_probs, truths = [], []
    for record in records:
        img = read_rgb(record, report)
        if img is None:
            continue
        h, w = img.shape[:2]
        boxes = [b for b in record.boxes if is_usable_box(b.xyxy, w, h)]
        if len(boxes) < len(record.boxes):
            report.counts["degenerate box"] += len(record.boxes) - len(boxes)
        if not boxes:
            continue
        crops = np.stack(
            [crop_cell(img, b.xyxy, lite.size, card.get("context", 0.15)) for b in boxes]
        )
        probs = lite.predict(crops)
        for box, p in zip(boxes, probs, strict=True):
            entries.append(
                {
                    "file": str(record.image_path),
                    "box": [round(v, 1) for v in box.xyxy],
                    "true": box.label,
                    "predicted": names[int(p.argmax())],
                    "probabilities": {n: round(float(v), 5) for n, v in zip(names, p, strict=True)},
                }
            )
        all_probs.append(probs)
        truths += [names.index(b.label) for b in boxes]
    probs = np.concatenate(all_probs) if all_probs else np.zeros((0, len(names)))
    y = np.asarray(truths, dtype=int)
    result = {
        "schema": SCHEMA,
        "model": {k: card[k] for k in ("name", "version", "sha256")},
        "labels": str(labels),
        "format": fmt,
        "crops": entries,
        "metrics": {
            "all_outputs": metrics(y, probs.argmax(1), names) if len(y) else {},
            "cells": cell_metrics(probs, y, names) if len(y) else {},
        },
        "skipped": dict(report.counts),
        "skipped_messages": report.messages[:200],
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=1) + "\n")
    cells = result["metrics"]["cells"].get("background_excluded", {})
    return (
        f"{len(entries)} boxes from {len(records)} images -> {output}; "
        f"3-class accuracy {cells.get('accuracy', 0):.4f}, macro F1 "
        f"{cells.get('macro_f1', 0):.4f}; {report.summary()}"
    )
