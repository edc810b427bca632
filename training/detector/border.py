"""Where a detector's count errors are: the slide's interior, or the cells its border cuts.

``python -m training.detector.border --side val --out var/border/1.7.0-val`` runs the shipped
detector (``BLOODCOUNT_DETECTOR_PATH`` for another) on the TXL-PBC slides of ``--side`` and
writes two reports in ``bloodcount evaluate``'s format, so ``targets`` and ``compare`` read
them: ``interior.json`` scores only the cells clear of the image border, ``border.json`` only
the cells it cuts. It prints, per lab group and class, the count error per slide split the
same way.

Why: TXL-PBC boxes a cell the border cuts in some slides and leaves a sliver of one unboxed in
others; on the BCCD lab's validation slides nearly half the labelled red cells touch the
border. A measurement, not a target: the issue's targets count every visible cell.

Each cell is placed once. A detection matched to a label (one-to-one at IoU 0.5, as the
evaluation matches) goes where the label's box is, so the two sides of a match never fall on
different sides of the line; a label or detection left unmatched goes where its own box is.
A box within ``--margin`` px of an edge touches the border (TXL-PBC's boxes of cut cells end
0-2 px from it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bloodcount.evaluation import SlideScore, greedy_pairs, slide_rows, summarise_by
from bloodcount.vision import CLASSES
from bloodcount.vision.geometry import as_boxes, touches_border

MARGIN = 2.0
REGIONS = ("interior", "border")


def split_slide(
    file: str,
    source: str,
    cells: list[dict[str, Any]],
    truth: list[tuple[tuple[float, ...], str]],
    width: int,
    height: int,
    margin: float = MARGIN,
) -> dict[str, SlideScore]:
    """One slide's score twice, {"interior": ..., "border": ...}: each cell counted in one.

    Together they add up to the whole slide's score: true and predicted counts and matches.
    """
    parts: dict[str, dict[str, Any]] = {r: {"true": {}, "pred": {}, "matches": {}} for r in REGIONS}
    for label in CLASSES:
        t = as_boxes([box for box, lab in truth if lab == label])
        p = [c for c in cells if c["label"] == label]
        p_boxes = as_boxes([c["box"] for c in p])
        pairs = greedy_pairs(p_boxes, [c["confidence"] for c in p], t)
        true_cut = touches_border(t, width, height, margin)
        pred_cut = touches_border(p_boxes, width, height, margin)
        for i, j in pairs:
            pred_cut[i] = true_cut[j]  # a match sits where its label is
        matched_cut = np.array([true_cut[j] for _, j in pairs], dtype=bool)
        for region, cut in zip(REGIONS, (False, True), strict=True):
            n_true = int((true_cut == cut).sum())
            n_pred = int((pred_cut == cut).sum())
            tp = int((matched_cut == cut).sum())
            parts[region]["true"][label] = n_true
            parts[region]["pred"][label] = n_pred
            parts[region]["matches"][label] = (tp, n_pred, n_true)
    return {
        r: SlideScore(file, source, v["true"], v["pred"], v["matches"]) for r, v in parts.items()
    }


def count_errors(scores: dict[str, list[SlideScore]], key) -> dict[str, dict[str, dict]]:
    """Per group and class: the true cells of each region, the mean absolute count error per
    slide over the whole slide and over each region, and each region's summed signed error
    (predicted - true)."""
    out: dict[str, dict[str, dict]] = {}
    for k, first in enumerate(scores["interior"]):
        for label in CLASSES:
            row = out.setdefault(key(first), {}).setdefault(label, {"slides": 0, "whole": 0})
            row["slides"] += 1
            whole = 0
            for r in REGIONS:
                s = scores[r][k]
                diff = s.pred_counts[label] - s.true_counts[label]
                whole += diff
                row[r] = row.get(r, 0) + abs(diff)
                row[f"{r}_signed"] = row.get(f"{r}_signed", 0) + diff
                row[f"{r}_true"] = row.get(f"{r}_true", 0) + s.true_counts[label]
            row["whole"] += abs(whole)
    for classes in out.values():
        for row in classes.values():
            for name in ("whole", *REGIONS):
                row[name] /= row["slides"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=("train", "val", "test"), default="val")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--margin", type=float, default=MARGIN, help="px (default %(default)s)")
    args = parser.parse_args(argv)
    from bloodcount.analysis import open_analyzer
    from bloodcount.evaluation import by_lab_group, by_source
    from training.detector.data import txl_records

    analyzer = open_analyzer("border", "dense")
    if analyzer is None:
        return 2
    scores: dict[str, list[SlideScore]] = {r: [] for r in REGIONS}
    for record in txl_records(args.side):
        result = analyzer.analyze_path(record.image_path)
        if result.status != "ok":  # the shared slides all decode; say so if one stops
            print(f"border: {record.image_path}: {result.error}", file=sys.stderr)
            return 1
        split = split_slide(
            record.image_path.name,
            record.source,
            result.to_dict()["cells"],
            [(b.xyxy, b.label) for b in record.boxes],
            result.width,
            result.height,
            args.margin,
        )
        for r in REGIONS:
            scores[r].append(split[r])
    args.out.mkdir(parents=True, exist_ok=True)
    for r in REGIONS:
        document = {
            "schema": "bloodcount.evaluation/v1",
            "method": analyzer.method,
            "model": analyzer.model_info,
            "split": args.side,
            "region": r,
            "margin": args.margin,
            "iou_threshold": 0.5,
            "sources": summarise_by(scores[r], by_source),
            "groups": summarise_by(scores[r], by_lab_group),
            "slides": slide_rows(scores[r]),
        }
        (args.out / f"{r}.json").write_text(json.dumps(document, indent=1) + "\n")
    print(
        "| group | class | slides | true cells interior / border | "
        "MAE per slide: whole / interior / border | predicted - true: interior / border |"
    )
    print("|---|---|---|---|---|---|")
    for group, classes in count_errors(scores, by_lab_group).items():
        for label, e in classes.items():
            print(
                f"| {group} | {label} | {e['slides']} | {e['interior_true']} / "
                f"{e['border_true']} | {e['whole']:.2f} / {e['interior']:.2f} / "
                f"{e['border']:.2f} | {e['interior_signed']:+d} / {e['border_signed']:+d} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
