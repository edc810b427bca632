"""Show a detector's mistakes: every missed and every false cell on one side of the split.

``python -m training.detector.errors --side val [--model bloodcount/models/detector]
[--out var/errors]`` runs the detector (at its card's thresholds) on the TXL-PBC slides of
``--side`` and writes, per source, class and kind (``FP``: found but not labelled, ``FN``:
labelled but not found): a mosaic ``{source}-{class}-{kind}.png`` of the cells in their
surroundings, and one entry per cell in ``errors.json`` (slide, box, confidence, and the
label of the other side's most overlapping box).

Counts only say how many mistakes there are; the mosaics say which are the detector's and
which are the labels' (an unlabelled platelet scores as a false one). Use it on validation
to decide what to change; on test only to explain a result after the choice is made.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bloodcount.evaluation import greedy_pairs
from bloodcount.vision import CLASSES
from bloodcount.vision.geometry import iou_matrix

CONTEXT = 40  # px of surroundings kept around each cell in the mosaics
TILE = 160
PER_MOSAIC = 48


@dataclass
class Mistake:
    """One false (``FP``) or missed (``FN``) cell and what the other side had nearest to it."""

    slide: str
    source: str
    label: str
    kind: str
    box: list[float]
    confidence: float | None  # the detector's, for FP
    nearest: str | None  # label of the other side's most overlapping box (None: no overlap)
    nearest_iou: float


def slide_mistakes(
    slide: str,
    source: str,
    pred_boxes: np.ndarray,
    pred_labels: np.ndarray,
    pred_scores: np.ndarray,
    true_boxes: np.ndarray,
    true_labels: np.ndarray,
) -> list[Mistake]:
    """Per class, the predictions left unmatched (FP) and the labels left unmatched (FN).

    Matching is the evaluation's (one-to-one at IoU 0.5, best score first, within a class), so
    these lists add up to exactly the FP and FN behind ``bloodcount evaluate``'s figures.
    """
    out = []
    for c, name in enumerate(CLASSES):
        p, t = np.flatnonzero(pred_labels == c), np.flatnonzero(true_labels == c)
        pairs = greedy_pairs(pred_boxes[p], pred_scores[p], true_boxes[t])
        matched_p = {p[i] for i, _ in pairs}
        matched_t = {t[j] for _, j in pairs}
        for kind, own, own_boxes, other_boxes, other_labels in (
            ("FP", [i for i in p if i not in matched_p], pred_boxes, true_boxes, true_labels),
            ("FN", [j for j in t if j not in matched_t], true_boxes, pred_boxes, pred_labels),
        ):
            for k in own:
                ious = iou_matrix(own_boxes[k : k + 1], other_boxes)[0]
                m = int(np.argmax(ious)) if len(ious) and ious.max() > 0 else None
                out.append(
                    Mistake(
                        slide,
                        source,
                        name,
                        kind,
                        [round(float(v), 1) for v in own_boxes[k]],
                        round(float(pred_scores[k]), 3) if kind == "FP" else None,
                        None if m is None else CLASSES[int(other_labels[m])],
                        0.0 if m is None else round(float(ious[m]), 3),
                    )
                )
    return out


def _crop(image: np.ndarray, box: list[float], colour: tuple[int, int, int]) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cx0, cy0 = max(0, x0 - CONTEXT), max(0, y0 - CONTEXT)
    crop = image[cy0 : min(h, y1 + CONTEXT), cx0 : min(w, x1 + CONTEXT)].copy()
    cv2.rectangle(crop, (x0 - cx0, y0 - cy0), (x1 - cx0 - 1, y1 - cy0 - 1), colour, 1)
    return cv2.resize(crop, (TILE, TILE))


def _mosaic(tiles: list[np.ndarray], per_row: int = 8) -> np.ndarray:
    tiles = tiles + [np.zeros_like(tiles[0])] * (-len(tiles) % per_row)
    return np.vstack([np.hstack(tiles[i : i + per_row]) for i in range(0, len(tiles), per_row)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=("train", "val", "test"), default="val")
    parser.add_argument("--model", type=Path, default=Path("bloodcount/models/detector"))
    parser.add_argument("--out", type=Path, default=Path("var/errors"))
    args = parser.parse_args(argv)
    import cv2

    from bloodcount.vision.dense_detector import DenseDetector
    from bloodcount.vision.detect_dense import detect_cells_dense
    from training.detector.data import txl_records

    detector = DenseDetector.load(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    mistakes, tiles, counts = [], {}, Counter()
    for record in txl_records(args.side):
        bgr = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
        found = detect_cells_dense(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), detector)
        found_here = slide_mistakes(
            record.image_path.name,
            record.source,
            found.boxes,
            found.labels,
            1.0 - found.background,
            np.array([b.xyxy for b in record.boxes], np.float64).reshape(-1, 4),
            np.array([CLASSES.index(b.label) for b in record.boxes], np.int64),
        )
        for m in found_here:
            # Red: the detector's box (FP); green: the label's box (FN). OpenCV is BGR.
            colour = (0, 0, 255) if m.kind == "FP" else (0, 255, 0)
            key = f"{m.source}-{m.label}-{m.kind}"
            counts[key] += 1
            group = tiles.setdefault(key, [])
            if len(group) < PER_MOSAIC:
                group.append(_crop(bgr, m.box, colour))
        mistakes += found_here
    for key, group in sorted(tiles.items()):
        cv2.imwrite(str(args.out / f"{key}.png"), _mosaic(group))
        print(f"{key}: {counts[key]}")  # the mosaic shows the first PER_MOSAIC
    (args.out / "errors.json").write_text(
        json.dumps(
            {"side": args.side, "model": detector.info, "mistakes": [asdict(m) for m in mistakes]},
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
