"""``bloodcount evaluate``: run the analysis on annotated slides and score it per source."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score slide analysis against annotated slides",
        description=(
            "Analyse annotated slides and score counts (accuracy, per-slide MAE) and detections "
            "(precision/recall/F1 at IoU 0.5) per class, for each source and for each lab group "
            "of the targets (BCCD lab; other labs: PBC and Raabin), each F1 and count accuracy "
            "with a 95% interval from resampling the slides. "
            "Exit 0 when the evaluation ran, 2 on usage errors."
        ),
    )
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="DIR",
        help="VOC folder (Annotations/, JPEGImages/), CSV file or folder, or YOLO folder (labels/, images/)",
    )
    parser.add_argument("--format", required=True, choices=["voc", "csv", "yolo"], dest="fmt")
    parser.add_argument("--output", required=True, metavar="FILE.json")
    parser.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="only images on this side of the committed split (test = never trained on)",
    )
    parser.add_argument(
        "--images-list", metavar="FILE", help="only the image file names listed (one a line)"
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="predicted vs true counts per slide (default: next to --output)",
    )
    parser.add_argument(
        "--method",
        choices=["dense", "classical"],
        default=None,
        help="dense: the learned detector (default); classical: OpenCV proposals + crop classifier",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run)


def _read(fmt: str, dataset: Path):
    """Records from the training package's readers (imported lazily: it is not needed to serve)."""
    from training.datasets import ReadReport, read_labels

    report = ReadReport()
    if fmt == "voc":
        records = read_labels("voc", dataset / "Annotations", dataset / "JPEGImages", report)
    elif fmt == "csv":
        csv_path = dataset if dataset.is_file() else dataset / "annotations.csv"
        records = read_labels("csv", csv_path, csv_path.parent / "JPEGImages", report)
    else:
        records = read_labels("yolo", dataset / "labels", dataset / "images", report)
    return records, report


def _select(records, split: str | None, images_list: str | None):
    if images_list:
        wanted = {
            Path(line.strip()).name
            for line in Path(images_list).read_text().splitlines()
            if line.strip()
        }
        records = [r for r in records if r.image_path.name in wanted]
    if split:
        from training.datasets import file_sha256
        from training.split import load_split

        side = {e["sha256"] for e in load_split()["images"] if e["side"] == split}
        records = [r for r in records if (r.sha256 or file_sha256(r.image_path)) in side]
    return records


def run(args: argparse.Namespace) -> int:
    """Analyse and score; write the JSON report and the plot."""
    from tqdm import tqdm

    from bloodcount.analysis import open_analyzer
    from bloodcount.evaluation import (
        by_lab_group,
        by_source,
        plot_counts,
        score_slide,
        slide_rows,
    )

    dataset = Path(args.dataset)
    if not dataset.exists():
        print(f"bloodcount evaluate: no such dataset: {dataset}", file=sys.stderr)
        return 2
    records, report = _read(args.fmt, dataset)
    records = _select(records, args.split, args.images_list)
    if not records:
        print("bloodcount evaluate: no annotated images selected", file=sys.stderr)
        return 2
    analyzer = open_analyzer("evaluate", args.method)
    if analyzer is None:
        return 2
    scores, failed, warned = [], [], []
    for record in tqdm(records, unit="slide", file=sys.stderr, disable=args.no_progress):
        result = analyzer.analyze_path(record.image_path)
        if result.status != "ok":
            failed.append({"file": str(record.image_path), "error": result.error})
            continue
        if result.warnings:
            # Scored all the same (as a lab's counts would be): the list says which were warned.
            warned.append({"file": str(record.image_path), "warnings": result.warnings})
        truth = [(b.xyxy, b.label) for b in record.boxes]
        scores.append(
            score_slide(str(record.image_path), record.source, result.to_dict()["cells"], truth)
        )
    sources = _summary_with_intervals(scores, by_source)
    groups = _summary_with_intervals(scores, by_lab_group)
    plot = args.plot or str(Path(args.output).with_suffix(".png"))
    plot_counts(scores, plot)
    document = {
        "schema": "bloodcount.evaluation/v1",
        "method": analyzer.method,
        "model": analyzer.model_info,
        "dataset": str(dataset),
        "format": args.fmt,
        "split": args.split,
        "images_list": args.images_list,
        "iou_threshold": 0.5,
        "reader": report.summary(),
        "failed": failed,
        "warned": warned,
        "sources": sources,
        "groups": groups,
        "slides": slide_rows(scores),
        "plot": plot,
    }
    Path(args.output).write_text(json.dumps(document, indent=1) + "\n")
    for name, summary in [*sources.items(), *groups.items()]:
        parts = [
            f"{c} F1 {m['f1']:.3f}{_span(m['f1_interval'])} "
            f"acc {m['count_accuracy'] or 0:.3f}{_span(m['count_accuracy_interval'])} "
            f"MAE {m['mae_per_slide']:.2f} ({m['true']} cells)"
            for c, m in summary["classes"].items()
        ]
        print(f"{name} ({summary['slides']} slides): " + "; ".join(parts), file=sys.stderr)
    print(
        f'slides counted with warnings: {len(warned)} of {len(scores)} (see "warned")',
        file=sys.stderr,
    )
    return 0


def _summary_with_intervals(scores, key) -> dict:
    """Per-group metrics, each F1 and count accuracy with its 95% interval from resampling
    the group's slides: how far a figure from a few cells can be trusted."""
    from bloodcount.evaluation import bootstrap_intervals, summarise_by

    summary = summarise_by(scores, key)
    for name, classes in bootstrap_intervals(scores, key=key).items():
        for label, interval in classes.items():
            metrics = summary[name]["classes"][label]
            metrics["f1_interval"] = interval["f1"]
            metrics["count_accuracy_interval"] = interval["count_accuracy"]
    return summary


def _span(interval: list[float] | None) -> str:
    return f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
