"""Does counting hold on slides that look different? The held-out slides, changed, scored again.

``python -m training.detector.robustness [--side test] [--changes x0.5,x2,warm,...]`` applies
each named change to every slide of one side of the split, writes the results as lossless
PNG with their YOLO labels (relative coordinates, so unchanged) under ``--out``, and runs
``bloodcount evaluate`` on each source. It prints F1 and count accuracy per source and
class, change by change (``x1``, the slides as they are, first).

Why: other labs' slides differ from these in magnification (another objective or camera),
stain and white balance, focus and compression. The detector sees every slide at one
canonical red-cell size, which OpenCV estimates first (``bloodcount.vision.canonical``), so
a scale change tests that estimate; colour and optics changes test the network itself.
These are the changes alone, on the same cells: not a new microscope, stain or lab.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from bloodcount.vision import CLASSES

SOURCES = ("txl-bccd", "txl-pbc", "txl-raabin")


def _scale(factor: float):
    def change(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        return cv2.resize(image, size, interpolation=interp)

    return change


def _channels(blue: float, green: float, red: float):
    """White balance or overall brightness: each BGR channel times its gain."""
    gains = np.array([blue, green, red], np.float32)
    return lambda image: np.clip(image * gains, 0, 255).astype(np.uint8)


def _gamma(gamma: float):
    table = np.array([255 * (i / 255) ** gamma for i in range(256)]).round().astype(np.uint8)
    return lambda image: cv2.LUT(image, table)


def _hsv(hue: int = 0, saturation: float = 1.0):
    """Stain shift: hue rotated by ``hue`` OpenCV units (2 degrees each), saturation scaled."""

    def change(image: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int32)
        hsv[..., 0] = (hsv[..., 0] + hue) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)

    return change


def _blur(sigma: float):
    return lambda image: cv2.GaussianBlur(image, (0, 0), sigma)


def _jpeg(quality: int):
    def change(image: np.ndarray) -> np.ndarray:
        encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        return cv2.imdecode(encoded, cv2.IMREAD_COLOR)

    return change


# name -> change of a BGR uint8 image. Magnitudes are what separates labs, not extremes.
CHANGES = {
    "x1": lambda image: image,
    **{f"x{f:g}": _scale(f) for f in (0.4, 0.5, 0.75, 1.5, 2, 2.5)},
    "darker": _channels(0.8, 0.8, 0.8),
    "brighter": _channels(1.15, 1.15, 1.15),
    "gamma0.8": _gamma(0.8),
    "gamma1.25": _gamma(1.25),
    "warm": _channels(0.9, 1.0, 1.1),
    "cool": _channels(1.1, 1.0, 0.9),
    "pale": _hsv(saturation=0.7),
    "vivid": _hsv(saturation=1.3),
    "hue-10": _hsv(hue=-5),
    "hue+10": _hsv(hue=5),
    "blur1": _blur(1.0),
    "blur2": _blur(2.0),
    "jpeg50": _jpeg(50),
}


def changed_dataset(records, change, folder: Path, classes_file: Path) -> None:
    """``records``' images through ``change`` as PNG, with their label files, in YOLO layout."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(classes_file, folder / "classes.txt")
    for record in records:
        image = change(cv2.imread(str(record.image_path), cv2.IMREAD_COLOR))
        cv2.imwrite(str(folder / "images" / f"{record.image_path.stem}.png"), image)
        shutil.copyfile(record.labels_path, folder / "labels" / record.labels_path.name)


def measure(side: str, changes: list[str], out: Path, data_dir: Path | None = None) -> dict:
    """{change: {source: {class: {"f1", "count_accuracy", "true"}}}} from bloodcount evaluate."""
    from bloodcount.cli import main as cli
    from training.datasets import default_data_dir
    from training.detector.data import txl_records

    txl = Path(data_dir or default_data_dir()) / "txl-pbc"
    records = txl_records(side, data_dir)
    table: dict = {}
    for name in changes:
        for source in SOURCES:
            chosen = [r for r in records if r.source == source]
            folder = out / name / source
            changed_dataset(chosen, CHANGES[name], folder, txl / "classes.txt")
            report = folder / "evaluation.json"
            argv = ["evaluate", "--dataset", str(folder), "--format", "yolo", "--source", source]
            if cli([*argv, "--output", str(report), "--no-progress"]) != 0:
                raise SystemExit(f"bloodcount evaluate failed on {folder}")
            classes = json.loads(report.read_text())["sources"][source]["classes"]
            table.setdefault(name, {})[source] = {
                c: {k: classes[c][k] for k in ("f1", "count_accuracy", "true")} for c in CLASSES
            }
    return table


def markdown(table: dict) -> str:
    """One row per source and class, one column per change: 'F1 / count accuracy'."""
    names = list(table)
    lines = [
        "| source | class | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for source in SOURCES:
        for c in CLASSES:
            cells = []
            for f in names:
                m = table[f][source][c]
                acc = "-" if m["count_accuracy"] is None else f"{m['count_accuracy']:.3f}"
                cells.append(f"{m['f1']:.3f} / {acc}")
            true = table[names[0]][source][c]["true"]
            lines.append(f"| {source} | {c} ({true}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=["val", "test"], default="test")
    parser.add_argument(
        "--changes", default=",".join(CHANGES), help=f"comma-separated, of: {', '.join(CHANGES)}"
    )
    parser.add_argument("--out", type=Path, default=Path("var/robustness"))
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    changes = [c.strip() for c in args.changes.split(",")]
    unknown = sorted(set(changes) - set(CHANGES))
    if unknown:
        parser.error(f"unknown changes {unknown}; known: {', '.join(CHANGES)}")
    table = measure(args.side, changes, args.out)
    print(f"{args.side} side, F1 / count accuracy (true cells in brackets):")
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
