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
        help="VOC folder (Annotations/, JPEGImages/), CSV file or folder, or YOLO folder "
        "(labels/, images/, and classes.txt, obj.names or data.yaml)",
    )
    parser.add_argument(
        "--images",
        metavar="DIR",
        help="where the images are, if not in the format's usual folder (VOC: JPEGImages/ or "
        "Images/ beside Annotations/; CSV: JPEGImages/ beside it, or its own folder; YOLO: "
        "images/, with sub-folders such as images/val)",
    )
    parser.add_argument("--format", required=True, choices=["voc", "csv", "yolo"], dest="fmt")
    parser.add_argument(
        "--classes",
        metavar="FILE",
        help="YOLO class names (a list, one a line, or a data.yaml), if not found beside labels/",
    )
    parser.add_argument(
        "--source",
        metavar="NAME",
        help="name every slide's source NAME (a dataset from elsewhere; default: the format's "
        "name, and for YOLO TXL-PBC's sub-sources: txl-bccd by file name, txl-raabin by size, "
        "else txl-pbc)",
    )
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


# Where each format's images usually are, relative to the labels' parent folder; the first
# that exists is used (CBC, for one, ships VOC with Images/ rather than JPEGImages/; a CSV
# export often sits among its images).
_IMAGE_FOLDERS = {
    "voc": ("JPEGImages", "Images", "images"),
    "csv": ("JPEGImages", "Images", "images", "."),
    "yolo": ("images", "Images"),
}


def _labels_path(fmt: str, dataset: Path) -> Path:
    if fmt == "voc":
        return dataset / "Annotations"
    if fmt == "csv":
        if dataset.is_file():
            return dataset
        # BCCD's name, else the folder's only CSV file; several are ambiguous.
        found = sorted(dataset.glob("*.csv"))
        if (dataset / "annotations.csv").is_file() or len(found) != 1:
            return dataset / "annotations.csv"
        return found[0]
    return dataset / "labels"


def _missing_labels(fmt: str, dataset: Path) -> str | None:
    """What is wrong when the labels the format needs are not where they should be."""
    labels = _labels_path(fmt, dataset)
    if labels.exists():
        return None
    if fmt == "csv":
        found = sorted(p.name for p in dataset.glob("*.csv"))
        listed = f"; it holds {', '.join(found)}: give one as --dataset FILE" if found else ""
        return f"no annotations.csv in {dataset}{listed}"
    return f"no {labels.name}/ folder in {dataset} (a {fmt.upper()} dataset keeps its labels there)"


def _images_folder(fmt: str, dataset: Path, given: str | None = None) -> Path:
    """The folder the images are read from: ``given``, else the format's usual one."""
    if given:
        return Path(given)
    base = _labels_path(fmt, dataset).parent
    candidates = [base / name for name in _IMAGE_FOLDERS[fmt]]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _read(fmt: str, dataset: Path, images: Path, args: argparse.Namespace):
    """Records from the training package's readers (imported lazily: it is not needed to serve)."""
    from training.datasets import ReadReport, read_labels

    report = ReadReport()
    labels = _labels_path(fmt, dataset)
    classes = Path(args.classes) if args.classes else None
    return read_labels(fmt, labels, images, report, classes, args.source), report


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


def _why_none(args: argparse.Namespace, read: list, report, images: Path) -> str:
    """Why no slide is left to score, with what to do about it."""
    if not read:
        where = _labels_path(args.fmt, Path(args.dataset))
        missing = report.counts.get("missing image", 0)
        if missing:
            return (
                f"no annotated images: the images of {missing} annotations are not in "
                f"{images} (give their folder with --images DIR)"
            )
        return f"no annotated images in {where} ({report.summary()})"
    if args.images_list:
        return f"none of the {len(read)} annotated images is named in {args.images_list}"
    return (
        f"none of the {len(read)} annotated images is on the {args.split} side of the "
        "committed split (it lists the shared data's images only; leave out --split to "
        "score slides from elsewhere)"
    )


def run(args: argparse.Namespace) -> int:
    """Analyse and score; write the JSON report and the plot."""
    from tqdm import tqdm

    from bloodcount.analysis import open_analyzer
    from bloodcount.commands.outputs import prepare_outputs, shown_path
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
    problem = _missing_labels(args.fmt, dataset)
    if problem:
        print(f"bloodcount evaluate: {problem}", file=sys.stderr)
        return 2
    from training.datasets import DataError

    images = _images_folder(args.fmt, dataset, args.images)
    # VOC and CSV name their images, and say which are missing; YOLO lists the folder.
    if (args.images or args.fmt == "yolo") and not images.is_dir():
        print(
            f"bloodcount evaluate: no images folder {images} (give it with --images DIR)",
            file=sys.stderr,
        )
        return 2
    try:
        read, report = _read(args.fmt, dataset, images, args)
    except DataError as exc:  # a file the whole dataset depends on (classes, CSV header)
        print(f"bloodcount evaluate: {exc}", file=sys.stderr)
        return 2
    records = _select(read, args.split, args.images_list)
    if not records:
        print(f"bloodcount evaluate: {_why_none(args, read, report, images)}", file=sys.stderr)
        return 2
    plot = Path(args.plot or Path(args.output).with_suffix(".png"))
    if not prepare_outputs("evaluate", args.output, plot):
        return 2
    analyzer = open_analyzer("evaluate", args.method)
    if analyzer is None:
        return 2
    scores, failed, warned = [], [], []
    for record in tqdm(records, unit="slide", file=sys.stderr, disable=args.no_progress):
        result = analyzer.analyze_path(record.image_path)
        if result.status != "ok":
            failed.append({"file": shown_path(record.image_path), "error": result.error})
            continue
        if result.warnings:
            # Scored all the same (as a lab's counts would be): the list says which were warned.
            warned.append({"file": shown_path(record.image_path), "warnings": result.warnings})
        truth = [(b.xyxy, b.label) for b in record.boxes]
        scores.append(
            score_slide(
                shown_path(record.image_path), record.source, result.to_dict()["cells"], truth
            )
        )
    sources = _summary_with_intervals(scores, by_source)
    groups = _summary_with_intervals(scores, by_lab_group)
    plot_counts(scores, str(plot))
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
        "plot": str(plot),
    }
    Path(args.output).write_text(json.dumps(document, indent=1) + "\n")
    # A dataset from elsewhere is one source and a group of the same name: print it once.
    groups_left = [(n, g) for n, g in groups.items() if n not in sources]
    for name, summary in [*sources.items(), *groups_left]:
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
    if args.fmt == "yolo" and not args.source and "txl" not in str(dataset.resolve()).lower():
        print(
            "sources were named by TXL-PBC's rules (txl-bccd by file name, txl-raabin by "
            "size, else txl-pbc); give --source NAME to score a dataset from elsewhere as one",
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
