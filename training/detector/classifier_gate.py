"""Does the crop classifier help the detector with platelets? A validation-side measurement.

``python -m training.detector.classifier_gate [--detector DIR] [--classifier DIR]`` collects
the detector's platelet peaks on the validation side down to a low score, classifies their
crops with the shipped crop classifier, and prints the pooled platelet F1 (IoU 0.5) of:
the detector's own threshold, and "score >= lo and the classifier prefers Platelets over
background" for several ``lo``. Platelets are the weakest class and few per slide, so
this is where a second look would be cheapest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bloodcount.evaluation import greedy_matches
from bloodcount.vision.dense_detector import DETECTOR_DIR, DenseDetector
from training.detector.ship import collect

PLATELETS = 2


def _f1(rows, rule) -> dict[str, float]:
    out = {}
    for source in ("all", "txl-bccd", "txl-pbc", "txl-raabin"):
        tp = n_pred = n_true = 0
        for src, boxes, scores, labels, probs, truth in rows:
            if source in ("all", src):
                keep = (labels == PLATELETS) & rule(scores, probs)
                tp += greedy_matches(boxes[keep], scores[keep], truth)
                n_pred, n_true = n_pred + int(keep.sum()), n_true + len(truth)
        out[source] = round(2 * tp / max(n_pred + n_true, 1), 3)
    return out


def main(argv: list[str] | None = None) -> None:
    from bloodcount.vision.classifier import Classifier
    from bloodcount.vision.crops import crop_batch

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detector", type=Path, default=DETECTOR_DIR)
    parser.add_argument("--classifier", type=Path, default=Path("bloodcount/models/default"))
    args = parser.parse_args(argv)
    detector = DenseDetector.load(args.detector)
    classifier = Classifier.load(args.classifier)
    floor = 0.08
    rows = []
    for record, found in collect(
        args.detector / "model.tflite",
        "val",
        flip_average=detector.flip_average,
        inference_scale=detector.inference_scale,
    ):
        image = cv2.cvtColor(
            cv2.imread(str(record.image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        )
        scores = 1.0 - found.background
        candidates = (found.labels == PLATELETS) & (scores >= floor)
        probs = np.zeros((len(scores), len(classifier.classes)), np.float32)
        if candidates.any():
            crops = crop_batch(
                image, [tuple(b) for b in found.boxes[candidates]], classifier.input_size
            )
            probs[candidates] = classifier.predict(crops)
        truth = [b.xyxy for b in record.boxes if b.label == "Platelets"]
        rows.append((record.source, found.boxes, scores, found.labels, probs, truth))
    plt, bg = classifier.classes.index("Platelets"), classifier.classes.index("background")
    threshold = round(float(detector.thresholds[PLATELETS]), 4)
    print(f"detector alone (score >= {threshold}):", _f1(rows, lambda s, p: s >= threshold))
    for lo in (0.08, 0.12, 0.16, 0.2, threshold):
        gate = _f1(rows, lambda s, p, lo=lo: (s >= lo) & (p[:, plt] >= p[:, bg]))
        print(f"score >= {lo} and classifier says Platelets over background:", gate)


if __name__ == "__main__":
    main()
