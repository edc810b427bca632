"""BCCD-only slides with their red cells labelled by a shipped detector (self-training).

The train side's 118 BCCD slides that TXL-PBC did not re-annotate box only about half their
red cells (:mod:`training.detector.partial` measures it), so ``--partial`` left the red-cell
heatmap untrained on them. Here a shipped detector labels their red cells instead, and a
fine-tune learns from 2.4 times as many same-lab slides as TXL-PBC gives (86 + 118):

- positives: the detector's red cells at its own threshold, and every BCCD red-cell box it
  did not find there (BCCD's boxes are few but drawn by a person);
- ignored for red cells: the boxes of finds between half the threshold and the threshold,
  where the detector is unsure, unless a BCCD box or a confident find is on the same cell;
- white cells and platelets: not trained on these slides at all.

Only slides on the train side of the split manifest are labelled, so no validation or test
image is seen. ``train --partial FILE`` reads the file this writes like a ``partial`` one.

    .venv/bin/python -m training.detector.pseudo --out var/pseudo-red.json [--detector DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from bloodcount.vision import CLASSES
from bloodcount.vision.geometry import iou_matrix
from training.detector.data import Slide, load_slide
from training.detector.partial import MATCH_IOU, bccd_records

MODE = "pseudo-red"
RBC = CLASSES.index("RBC")
UNSURE_SHARE = 0.5  # finds from this share of the threshold up to it are ignored, not taught
MIN_SIDE = 4  # px: smaller BCCD boxes are annotation slips


def red_finds(records, detector_dir: Path | None = None) -> dict:
    """Per slide name, the red cells a detector finds down to half its threshold, with scores."""
    from bloodcount.config import load_settings
    from bloodcount.vision.decode import decode_image
    from bloodcount.vision.dense_detector import DETECTOR_DIR, DenseDetector
    from bloodcount.vision.detect_dense import detect_cells_dense

    max_pixels = load_settings().max_image_pixels
    detector = DenseDetector.load(detector_dir or DETECTOR_DIR)
    threshold = round(float(detector.thresholds[RBC]), 4)
    detector.thresholds = detector.thresholds * UNSURE_SHARE
    finds = {}
    for record in records:
        found = detect_cells_dense(
            decode_image(record.image_path.read_bytes(), max_pixels), detector
        )
        red = found.labels == RBC
        scores = 1.0 - found.background[red]
        finds[record.image_path.name] = [
            [round(float(v), 1) for v in box] + [round(float(s), 4)]
            for box, s in zip(found.boxes[red], scores, strict=True)
        ]
    return {"mode": MODE, "detector": detector.info, "threshold": threshold, "finds": finds}


def pseudo_slide(record, finds: list, threshold: float) -> Slide:
    """A BCCD-only slide taught red cells only: confident finds plus BCCD's unfound boxes."""
    slide = load_slide(record)  # its canonical scale comes from BCCD's (partial) red boxes
    rows = np.array(finds, np.float32).reshape(-1, 5)
    sure = rows[rows[:, 4] >= threshold, :4]
    unsure = rows[rows[:, 4] < threshold, :4]
    bccd_red = slide.boxes[slide.labels == RBC].reshape(-1, 4)
    sides = bccd_red[:, 2:] - bccd_red[:, :2]
    bccd_red = bccd_red[(sides >= MIN_SIDE).all(axis=1)]  # BCCD has 1 px wide boxes
    if len(sure) and len(bccd_red):
        bccd_red = bccd_red[iou_matrix(bccd_red, sure).max(axis=1) < MATCH_IOU]
    # A weaker second peak on a confident cell is not a doubt about that cell, and a
    # person's box settles a doubt: neither is ignored (the first is taught as background).
    for settled in (sure, bccd_red):
        if len(unsure) and len(settled):
            unsure = unsure[iou_matrix(unsure, settled).max(axis=1) < MATCH_IOU]
    boxes = np.concatenate([sure, bccd_red]).astype(np.float32).reshape(-1, 4)
    others = tuple(i for i, _ in enumerate(CLASSES) if i != RBC)
    return dataclasses.replace(
        slide,
        boxes=boxes,
        labels=np.full(len(boxes), RBC, np.int64),
        ignore_boxes=unsure.astype(np.float32).reshape(-1, 4),
        ignore_labels=np.full(len(unsure), RBC, np.int64),
        ignored_classes=others,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--detector", type=Path, help="detector folder (default: the shipped one)")
    args = parser.parse_args(argv)
    records = bccd_records("train")
    doc = red_finds(records, args.detector)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    rows = [row for finds in doc["finds"].values() for row in finds]
    sure = sum(row[4] >= doc["threshold"] for row in rows)
    print(
        f"{len(records)} train-side BCCD slides: {sure} red cells at the threshold "
        f"{doc['threshold']}, {len(rows) - sure} unsure (ignored where nothing settles them) "
        f"-> {args.out}"
    )


if __name__ == "__main__":
    main()
