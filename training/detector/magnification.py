"""Does counting hold at another magnification? The held-out slides, resized, scored again.

``python -m training.detector.magnification [--side test] [--factors 0.5,0.75,1,1.5,2]``
resizes every slide of one side of the split by each factor (a lower or higher power
objective, or another camera, seen through the same slide), writes them as lossless PNG
with their YOLO labels (relative coordinates, so unchanged) under ``--out``, and runs
``bloodcount evaluate`` on each source at each factor. It prints F1 and count accuracy per
source and class, factor by factor.

Why: the detector sees every slide at one canonical red-cell size, which OpenCV estimates
first (``bloodcount.vision.canonical``); that estimate is what must carry a slide from an
unfamiliar magnification. TXL-PBC holds two magnifications only (Raabin's cells are about
twice BCCD's), so this measures the range in between and beyond. Resizing is not a new
microscope (no new optics, stain or noise): read it as the scale step alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2

from bloodcount.vision import CLASSES

SOURCES = ("txl-bccd", "txl-pbc", "txl-raabin")


def resized_dataset(records, factor: float, folder: Path, classes_file: Path) -> None:
    """``records``' images resized by ``factor`` as PNG, with their label files, in YOLO layout."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(classes_file, folder / "classes.txt")
    for record in records:
        image = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        out = image if factor == 1 else cv2.resize(image, size, interpolation=interp)
        cv2.imwrite(str(folder / "images" / f"{record.image_path.stem}.png"), out)
        shutil.copyfile(record.labels_path, folder / "labels" / record.labels_path.name)


def measure(side: str, factors: list[float], out: Path, data_dir: Path | None = None) -> dict:
    """{factor: {source: {class: {"f1", "count_accuracy", "true"}}}} from bloodcount evaluate."""
    from bloodcount.cli import main as cli
    from training.datasets import default_data_dir
    from training.detector.data import txl_records

    txl = Path(data_dir or default_data_dir()) / "txl-pbc"
    records = txl_records(side, data_dir)
    table: dict = {}
    for factor in factors:
        for source in SOURCES:
            chosen = [r for r in records if r.source == source]
            folder = out / f"x{factor:g}" / source
            resized_dataset(chosen, factor, folder, txl / "classes.txt")
            report = folder / "evaluation.json"
            argv = ["evaluate", "--dataset", str(folder), "--format", "yolo", "--source", source]
            if cli([*argv, "--output", str(report), "--no-progress"]) != 0:
                raise SystemExit(f"bloodcount evaluate failed on {folder}")
            classes = json.loads(report.read_text())["sources"][source]["classes"]
            table.setdefault(f"{factor:g}", {})[source] = {
                c: {k: classes[c][k] for k in ("f1", "count_accuracy", "true")} for c in CLASSES
            }
    return table


def markdown(table: dict) -> str:
    """One row per source and class, one column per factor: 'F1 / count accuracy'."""
    factors = list(table)
    lines = [
        "| source | class | " + " | ".join(f"x{f}" for f in factors) + " |",
        "|---|---|" + "---|" * len(factors),
    ]
    for source in SOURCES:
        for c in CLASSES:
            cells = []
            for f in factors:
                m = table[f][source][c]
                acc = "-" if m["count_accuracy"] is None else f"{m['count_accuracy']:.3f}"
                cells.append(f"{m['f1']:.3f} / {acc}")
            true = table[factors[0]][source][c]["true"]
            lines.append(f"| {source} | {c} ({true}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=["val", "test"], default="test")
    parser.add_argument("--factors", default="0.5,0.75,1,1.5,2")
    parser.add_argument("--out", type=Path, default=Path("var/magnification"))
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    factors = [float(f) for f in args.factors.split(",")]
    table = measure(args.side, factors, args.out)
    print(f"{args.side} side, F1 / count accuracy (true cells in brackets):")
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
