"""BCCD-only slides as partly labelled training data: their white cells and platelets, not their red cells.

TXL-PBC re-annotated 124 of BCCD's 292 slides; the other 168 carry only BCCD's own boxes,
which miss about half of the red cells and some platelets (on the 124 shared slides, measured
with this module's ``--check``: BCCD boxes 92 of TXL's 110 interior platelets, 17 of 32
border-cut ones, 77 of 77 interior and 49 of 53 border-cut white cells). So a BCCD-only
slide teaches the detector's white-cell and platelet heatmaps, and only where BCCD's
silence means "no cell":

- the red-cell heatmap is not trained on it at all;
- a band along the image border is ignored for white cells and platelets (BCCD skips many
  cells the border cuts);
- where a detector finds a white cell or platelet that BCCD did not box, that box is
  ignored for that class (the ``--out`` file of this module, made once with a shipped
  detector, so training needs no LiteRT).

Only slides on the train side of the split manifest are used.

    .venv/bin/python -m training.detector.partial --out var/partial.json   # unlabelled finds
    .venv/bin/python -m training.detector.partial --out var/partial-border.json --border-only
    .venv/bin/python -m training.detector.partial --check                  # BCCD vs TXL labels

``--border-only`` writes a file without finds: only the border band is ignored (the next
experiment in training/README.md: on the shared slides most of the platelet finds the
full rule ignores are not cells, so that rule hides real negatives).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from bloodcount.vision import CLASSES
from bloodcount.vision.geometry import iou_matrix, touches_border
from training.datasets import default_data_dir, file_sha256, read_voc, read_yolo
from training.detector.data import Slide, load_slide
from training.split import load_split

TRAINED = ("WBC", "Platelets")  # the classes BCCD boxes (almost) completely inside the border
BORDER_BAND = 16  # px of the 640x480 original: a border-cut platelet's centre lies within it
FIND_THRESHOLD_SHARE = 0.5  # unlabelled finds above half the shipped thresholds are ignored
FIND_GROW = 1.5  # an ignored find's box, grown about its centre
MATCH_IOU = 0.3
CUT_MARGIN = 8  # px: --check counts a TXL box this close to an edge as cut by the border


def bccd_records(side: str, data_dir: Path | None = None, split_path: Path | None = None):
    """BCCD slides that TXL-PBC did not re-annotate, on ``side`` of the split manifest."""
    wanted = {
        e["sha256"]
        for e in load_split(split_path)["images"]
        if e["side"] == side and e["source"] == "bccd"
    }
    return [r for r in _all_bccd(data_dir) if file_sha256(r.image_path) in wanted]


def _all_bccd(data_dir: Path | None) -> list:
    """Every BCCD slide with BCCD's own (VOC) boxes."""
    data_dir = Path(data_dir or default_data_dir())
    return read_voc(data_dir / "bccd/Annotations", data_dir / "bccd/JPEGImages", "bccd")


def unlabelled_finds(records, detector_dir: Path | None = None) -> dict:
    """Per slide name, the white cells and platelets a detector finds that BCCD did not box."""
    from bloodcount.config import load_settings
    from bloodcount.vision.decode import decode_image
    from bloodcount.vision.dense_detector import DETECTOR_DIR, DenseDetector
    from bloodcount.vision.detect_dense import detect_cells_dense

    max_pixels = load_settings().max_image_pixels  # the analyser's own limit
    detector = DenseDetector.load(detector_dir or DETECTOR_DIR)
    detector.thresholds = detector.thresholds * FIND_THRESHOLD_SHARE
    finds = {}
    for record in records:
        image = decode_image(record.image_path.read_bytes(), max_pixels)
        found = detect_cells_dense(image, detector)
        rows = []
        for name in TRAINED:
            c = CLASSES.index(name)
            labelled = np.array(
                [b.xyxy for b in record.boxes if b.label == name], np.float32
            ).reshape(-1, 4)
            mine = found.boxes[found.labels == c].reshape(-1, 4)
            if len(labelled):
                mine = mine[iou_matrix(mine, labelled).max(axis=1) < MATCH_IOU]
            rows += [[round(float(v), 1) for v in box] + [name] for box in mine]
        finds[record.image_path.name] = rows
    return {"detector": detector.info, "threshold_share": FIND_THRESHOLD_SHARE, "finds": finds}


def no_finds(records) -> dict:
    """A finds file that ignores nothing beyond the border band (``--border-only``)."""
    return {
        "detector": None,
        "threshold_share": None,
        "finds": {r.image_path.name: [] for r in records},
    }


def partial_slide(record, finds: list) -> Slide:
    """A BCCD-only slide: white-cell and platelet boxes, and where the loss must not look."""
    slide = load_slide(record)  # its canonical scale comes from BCCD's (partial) red boxes
    h, w = slide.image.shape[:2]
    kept = np.isin(slide.labels, [CLASSES.index(n) for n in TRAINED])
    band = BORDER_BAND
    strips = [[0, 0, w, band], [0, h - band, w, h], [0, 0, band, h], [w - band, 0, w, h]]
    ignore = [(box, CLASSES.index(n)) for n in TRAINED for box in strips]
    for *box, name in finds:
        x0, y0, x1, y1 = box
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        grown = [cx - FIND_GROW * hw, cy - FIND_GROW * hh, cx + FIND_GROW * hw, cy + FIND_GROW * hh]
        ignore.append((grown, CLASSES.index(name)))
    return dataclasses.replace(
        slide,
        boxes=slide.boxes[kept],
        labels=slide.labels[kept],
        ignore_boxes=np.array([b for b, _ in ignore], np.float32).reshape(-1, 4),
        ignore_labels=np.array([c for _, c in ignore], np.int64),
        ignored_classes=(CLASSES.index("RBC"),),
    )


def partial_slides(finds_path: Path, data_dir: Path | None = None) -> list:
    """The train side's BCCD-only slides, with the ignore regions of ``finds_path``.

    A file of :mod:`training.detector.pseudo` (its ``mode``) gives the slides its red cells instead.
    """
    from training.detector import pseudo  # here: pseudo builds on this module

    doc = json.loads(Path(finds_path).read_text())
    finds, labelled = doc["finds"], doc.get("mode") == pseudo.MODE
    records = bccd_records("train", data_dir)
    missing = [r.image_path.name for r in records if r.image_path.name not in finds]
    if missing:
        maker = "pseudo" if labelled else "partial"
        raise SystemExit(
            f"{finds_path} has no finds for {len(missing)} train-side BCCD slides "
            f"(first: {missing[0]}): make it again with python -m training.detector.{maker} --out"
        )
    if labelled:
        return [pseudo.pseudo_slide(r, finds[r.image_path.name], doc["threshold"]) for r in records]
    return [partial_slide(r, finds[r.image_path.name]) for r in records]


def check(data_dir: Path | None = None) -> dict:
    """How completely BCCD boxes what TXL-PBC boxes on the slides both label (IoU >= 0.3)."""
    bccd = {file_sha256(r.image_path): r for r in _all_bccd(data_dir)}
    txl = Path(data_dir or default_data_dir()) / "txl-pbc"
    out = {}
    for record in read_yolo(txl / "train/labels", txl / "train/images", txl / "classes.txt"):
        other = bccd.get(file_sha256(record.image_path)) if record.source == "txl-bccd" else None
        if other is None:
            continue
        for name in TRAINED:
            truth = np.array([b.xyxy for b in record.boxes if b.label == name]).reshape(-1, 4)
            theirs = np.array([b.xyxy for b in other.boxes if b.label == name]).reshape(-1, 4)
            found = (
                iou_matrix(truth, theirs).max(axis=1) >= MATCH_IOU
                if len(theirs)
                else np.zeros(len(truth), bool)
            )
            cut = touches_border(truth, record.width, record.height, CUT_MARGIN)
            for where, sel in (("interior", ~cut), ("border", cut)):
                row = out.setdefault(f"{name} {where}", {"txl": 0, "bccd_found": 0})
                row["txl"] += int(sel.sum())
                row["bccd_found"] += int(found[sel].sum())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="write the train side's unlabelled finds here")
    parser.add_argument("--detector", type=Path, help="detector folder (default: the shipped one)")
    parser.add_argument("--check", action="store_true", help="BCCD vs TXL-PBC on shared slides")
    parser.add_argument(
        "--border-only",
        action="store_true",
        help="with --out: no detector finds, only the border band is ignored",
    )
    args = parser.parse_args(argv)
    if args.check:
        print(json.dumps(check(), indent=1))
    if args.out:
        records = bccd_records("train")
        result = no_finds(records) if args.border_only else unlabelled_finds(records, args.detector)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        n = sum(len(v) for v in result["finds"].values())
        print(f"{len(records)} train-side BCCD slides, {n} unlabelled finds -> {args.out}")
    if not (args.check or args.out):
        parser.error("nothing to do: give --out FILE and/or --check")


if __name__ == "__main__":
    main()
