"""Readers for the three box formats (Pascal VOC XML, CSV, YOLO txt) and their merging.

Bad input policy: by default a problem (malformed file or line, unknown label, box off the
image, missing or unreadable image) is *skipped and counted* in a :class:`ReadReport`, with a
message naming the file and line; ``strict=True`` raises :class:`DataError` on the first one.
Boxes partly outside the image are clipped to it (border-cut cells are real cells).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from bloodcount.image_files import IMAGE_SUFFIXES, image_files_under

log = logging.getLogger(__name__)

CELL_CLASSES = ("RBC", "WBC", "Platelets")
BACKGROUND = "background"

_WBC_KINDS = ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")
# Spellings seen in public blood-cell datasets, lower-cased, mapped to our three names.
_LABEL_ALIASES = {
    "rbc": "RBC",
    "rbcs": "RBC",
    "red blood cell": "RBC",
    "red_blood_cell": "RBC",
    "red blood cells": "RBC",
    "erythrocyte": "RBC",
    "erythrocytes": "RBC",
    "wbc": "WBC",
    "wbcs": "WBC",
    "white blood cell": "WBC",
    "white_blood_cell": "WBC",
    "white blood cells": "WBC",
    "leukocyte": "WBC",
    "leukocytes": "WBC",
    "platelets": "Platelets",
    "platelet": "Platelets",
    "plt": "Platelets",
    "plts": "Platelets",
    "thrombocyte": "Platelets",
    "thrombocytes": "Platelets",
    # White-cell types, as datasets that label the differential name them (Raabin, PBC).
    **{f"{kind}{plural}": "WBC" for kind in _WBC_KINDS for plural in ("", "s")},
}
# When one image arrives through several sources, keep the labels of the most complete one:
# TXL-PBC boxes every visible cell, BCCD about half the red cells, CBC re-uses BCCD.
SOURCE_PRIORITY = ("txl-bccd", "txl-pbc", "txl-raabin", "bccd", "cbc")
COMPLETE_SOURCES = frozenset({"txl-bccd", "txl-pbc", "txl-raabin"})


class DataError(ValueError):
    """Input that cannot be read, raised in strict mode (or when a whole file is unusable)."""


def default_data_dir() -> Path:
    """``$BLOODCOUNT_DATA`` (or ``_DATA_DIR``), else ``../shared/data`` next to the repo."""
    env = os.environ.get("BLOODCOUNT_DATA") or os.environ.get("BLOODCOUNT_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def normalise_label(raw: str) -> str | None:
    """``RBC``/``WBC``/``Platelets`` for a known spelling, else None."""
    return _LABEL_ALIASES.get(raw.strip().lower().replace("-", " "))


@dataclass(frozen=True)
class Box:
    """One labelled box in pixel coordinates (x0, y0) inclusive, (x1, y1) exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass
class ImageRecord:
    """An image with its boxes as read from one source."""

    image_path: Path
    labels_path: Path
    source: str
    fmt: str
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    sha256: str = ""
    aliases: list[ImageRecord] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True where every visible cell is boxed, so unboxed areas are safe negatives."""
        return self.source in COMPLETE_SOURCES


@dataclass
class ReadReport:
    """What the readers skipped or fixed, and why."""

    strict: bool = False
    counts: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)

    def problem(self, reason: str, where: str, detail: str) -> None:
        """Record a problem (or raise in strict mode) with the file/line it came from."""
        message = f"{where}: {detail}"
        if self.strict:
            raise DataError(message)
        self.counts[reason] += 1
        self.messages.append(message)
        log.debug("skipped (%s) %s", reason, message)

    def summary(self) -> str:
        if not self.counts:
            return "no input problems"
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        return f"skipped/fixed: {parts}"


def file_sha256(path: Path) -> str:
    """Content hash: the same image reached through two sources has the same bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_size(path: Path, report: ReadReport) -> tuple[int, int] | None:
    """(width, height) from the image header, or None (recorded) if missing/unreadable."""
    if not path.is_file():
        report.problem("missing image", str(path), "image file not found")
        return None
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:  # PIL raises several types for a bad file
        report.problem("unreadable image", str(path), f"cannot read image: {exc}")
        return None


def make_box(
    coords: tuple[float, float, float, float],
    raw_label: str,
    width: int,
    height: int,
    where: str,
    report: ReadReport,
) -> Box | None:
    """Validated, normalised and clipped box, or None (recorded) for a bad one."""
    label = normalise_label(raw_label)
    if label is None:
        report.problem("unknown label", where, f"unknown label {raw_label!r}")
        return None
    x0, y0, x1, y1 = coords
    if x1 <= x0 or y1 <= y0:
        report.problem("inverted box", where, f"box {coords} has no area")
        return None
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        report.problem("box outside image", where, f"box {coords} lies outside {width}x{height}")
        return None
    clipped = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
    if clipped != (x0, y0, x1, y1):
        # Counted, not skipped: a cell cut by the border is still a cell.
        report.counts["box clipped to image"] += 1
    return Box(*clipped, label)


def _find_image(images_dir: Path, name: str) -> Path:
    path = images_dir / name
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES:
        candidate = images_dir / (Path(name).stem + suffix)
        if candidate.is_file():
            return candidate
    return path


def read_voc(
    annotations_dir: Path, images_dir: Path, source: str, report: ReadReport | None = None
) -> list[ImageRecord]:
    """Pascal VOC XML files in ``annotations_dir`` with their images in ``images_dir``."""
    report = report or ReadReport()
    records = []
    for xml_path in sorted(Path(annotations_dir).glob("*.xml")):
        try:
            root = ET.parse(xml_path).getroot()
        except ET.ParseError as exc:
            report.problem("malformed file", str(xml_path), f"malformed XML: {exc}")
            continue
        name = (root.findtext("filename") or xml_path.stem + ".jpg").strip()
        image_path = _find_image(Path(images_dir), name)
        size = image_size(image_path, report)
        if size is None:
            continue
        width, height = size
        record = ImageRecord(image_path, xml_path, source, "voc", width, height)
        for index, obj in enumerate(root.iter("object"), start=1):
            where = f"{xml_path} object {index}"
            bnd = obj.find("bndbox")
            try:
                coords = tuple(float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                report.problem("malformed box", where, "missing or non-numeric bndbox")
                continue
            box = make_box(coords, obj.findtext("name") or "", width, height, where, report)
            if box is not None:
                record.boxes.append(box)
        records.append(record)
    return records


# Column names of the two CSV layouts, told apart by the header.
CSV_LAYOUTS = {
    "bccd": ("filename", "cell_type", "xmin", "xmax", "ymin", "ymax"),
    "kaggle": ("image", "xmin", "ymin", "xmax", "ymax", "label"),
}


def csv_layout(header: Iterable[str]) -> str | None:
    """``bccd`` or ``kaggle`` for a recognised header, else None."""
    names = {h.strip().lower() for h in header}
    for layout, columns in CSV_LAYOUTS.items():
        if set(columns) <= names:
            return layout
    return None


def read_csv_boxes(
    csv_path: Path, images_dir: Path, source: str, report: ReadReport | None = None
) -> list[ImageRecord]:
    """A CSV of boxes (BCCD or Kaggle layout, by header), one record per image named."""
    report = report or ReadReport()
    csv_path = Path(csv_path)
    with csv_path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        layout = csv_layout(header or [])
        if layout is None:
            raise DataError(
                f"{csv_path}:1: unrecognised CSV header {header!r}; expected "
                + " or ".join(",".join(c) for c in CSV_LAYOUTS.values())
            )
        index = {h.strip().lower(): i for i, h in enumerate(header)}
        name_col, label_col = ("filename", "cell_type") if layout == "bccd" else ("image", "label")
        records: dict[str, ImageRecord | None] = {}
        for line_no, row in enumerate(reader, start=2):
            where = f"{csv_path}:{line_no}"
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                report.problem(
                    "malformed line", where, f"expected {len(header)} fields, got {len(row)}"
                )
                continue
            try:
                coords = tuple(float(row[index[k]]) for k in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError:
                report.problem("malformed line", where, "non-numeric coordinate")
                continue
            name = row[index[name_col]].strip()
            if name not in records:
                image_path = _find_image(Path(images_dir), name)
                size = image_size(image_path, report)
                records[name] = (
                    None
                    if size is None
                    else ImageRecord(image_path, csv_path, source, "csv", size[0], size[1])
                )
            record = records[name]
            if record is None:
                continue
            box = make_box(
                coords, row[index[label_col]], record.width, record.height, where, report
            )
            if box is not None:
                record.boxes.append(box)
    return [r for r in records.values() if r is not None]


# Where YOLO datasets name their classes, by the tools that write them: a plain list
# (TXL-PBC's classes.txt, darknet/CVAT's obj.names) or Ultralytics' data.yaml.
CLASS_FILES = ("classes.txt", "obj.names", "data.yaml", "dataset.yaml")


def find_classes(labels_dir: Path) -> Path:
    """The class-names file of a YOLO labels folder: in its parent or the parent's parent."""
    labels_dir = Path(labels_dir)
    folders = (labels_dir.parent, labels_dir.parent.parent)
    for folder in folders:
        for name in CLASS_FILES:
            if (folder / name).is_file():
                return folder / name
    raise DataError(
        f"no class names for the YOLO labels in {labels_dir}: expected one of "
        f"{', '.join(CLASS_FILES)} in {folders[0]} or {folders[1]} (or name it with --classes FILE)"
    )


def _class_lines(classes_path: Path) -> list[tuple[str, str]]:
    """(where, name) pairs of a plain list (where: the line) or a YAML file's ``names``."""
    try:
        text = Path(classes_path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{classes_path}: cannot read the class names ({exc})") from exc
    if Path(classes_path).suffix.lower() not in (".yaml", ".yml"):
        lines = enumerate(text.splitlines(), start=1)
        return [(str(n), line) for n, line in lines if line.strip()]
    import yaml

    try:
        names = (yaml.safe_load(text) or {}).get("names")
    except (yaml.YAMLError, AttributeError) as exc:
        raise DataError(f"{classes_path}: not a YAML mapping with 'names' ({exc})") from exc
    if isinstance(names, dict):  # Ultralytics: {0: WBC, 1: RBC, ...}, ids in order
        if sorted(names) != list(range(len(names))):
            raise DataError(
                f"{classes_path}: class ids {sorted(names)} are not 0..{len(names) - 1}"
            )
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DataError(f"{classes_path}: no 'names' list of classes")
    return [(f" class {i}", str(name)) for i, name in enumerate(names)]


def read_classes(classes_path: Path) -> list[str]:
    """YOLO class names in id order, normalised; an unknown name is an error."""
    names = []
    for where, line in _class_lines(classes_path):
        label = normalise_label(line)
        if label is None:
            raise DataError(f"{classes_path}:{where}: unknown class name {line.strip()!r}")
        names.append(label)
    return names


def txl_subsource(name: str, width: int, height: int) -> str:
    """Which dataset a TXL-PBC image came from: by name (BCCD) or size (Raabin 575 px)."""
    if name.startswith("BloodImage"):
        return "txl-bccd"
    if (width, height) == (575, 575):
        return "txl-raabin"
    return "txl-pbc"


def _yolo_labels_path(image: Path, images_dir: Path, labels_dir: Path) -> Path:
    """The label file of ``image``: at the same place under ``labels_dir`` as the image under
    ``images_dir``; else where YOLO itself looks (the last ``images`` folder of the image's
    path read as ``labels``), so that ``--images ds/images/val`` finds ``ds/labels/val``."""
    relative = image.relative_to(images_dir).with_suffix(".txt")
    path = labels_dir / relative
    parts = image.with_suffix(".txt").parts
    if not path.is_file() and "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        yolo = Path(*parts[:i], "labels", *parts[i + 1 :])
        if yolo.is_file():
            return yolo
    return path


def read_yolo(
    labels_dir: Path,
    images_dir: Path,
    classes_path: Path,
    source: str | None = None,
    report: ReadReport | None = None,
) -> list[ImageRecord]:
    """YOLO ``class cx cy w h`` (relative) files; ``source=None`` names TXL sub-sources."""
    report = report or ReadReport()
    classes = read_classes(classes_path)
    records = []
    for image_path in image_files_under(Path(images_dir)):
        labels_path = _yolo_labels_path(image_path, Path(images_dir), Path(labels_dir))
        if not labels_path.is_file():
            report.problem("missing labels", str(labels_path), "no label file for image")
            continue
        size = image_size(image_path, report)
        if size is None:
            continue
        width, height = size
        name = source or txl_subsource(image_path.name, width, height)
        record = ImageRecord(image_path, labels_path, name, "yolo", width, height)
        for line_no, line in enumerate(labels_path.read_text().splitlines(), start=1):
            where = f"{labels_path}:{line_no}"
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 5:
                    raise ValueError
                cls = int(parts[0])
                cx, cy, bw, bh = (float(v) for v in parts[1:])
            except ValueError:
                report.problem("malformed line", where, f"expected 'class cx cy w h', got {line!r}")
                continue
            if not 0 <= cls < len(classes):
                report.problem("unknown label", where, f"class id {cls} not in {classes_path}")
                continue
            coords = (
                (cx - bw / 2) * width,
                (cy - bh / 2) * height,
                (cx + bw / 2) * width,
                (cy + bh / 2) * height,
            )
            box = make_box(coords, classes[cls], width, height, where, report)
            if box is not None:
                record.boxes.append(box)
        records.append(record)
    return records


def read_labels(
    fmt: str,
    labels: Path,
    images: Path | None = None,
    report: ReadReport | None = None,
    classes: Path | None = None,
    source: str | None = None,
) -> list[ImageRecord]:
    """Read one labelled folder/file in ``fmt`` (voc, csv, yolo); used by ``classify`` and
    ``evaluate``. Every record's source is ``source`` if given, else the format's name
    (YOLO: TXL-PBC's sub-sources, :func:`txl_subsource`)."""
    labels = Path(labels)
    if fmt == "voc":
        return read_voc(labels, images or labels.parent / "JPEGImages", source or "voc", report)
    if fmt == "csv":
        csv_images = images or labels.parent / "JPEGImages"
        return read_csv_boxes(labels, csv_images, source or "csv", report)
    if fmt == "yolo":
        classes = classes or find_classes(labels)
        return read_yolo(labels, images or labels.parent / "images", classes, source, report)
    raise DataError(f"unknown format {fmt!r}: use voc, csv or yolo")


def read_shared_data(data_dir: Path, report: ReadReport | None = None) -> list[ImageRecord]:
    """All three sources of ``../shared/data`` (BCCD VOC, CBC VOC, TXL-PBC YOLO), unmerged."""
    data_dir = Path(data_dir)
    report = report or ReadReport()
    records = read_voc(data_dir / "bccd/Annotations", data_dir / "bccd/JPEGImages", "bccd", report)
    for part in ("Training", "Testing"):
        records += read_voc(
            data_dir / "cbc" / part / "Annotations",
            data_dir / "cbc" / part / "Images",
            "cbc",
            report,
        )
    txl = data_dir / "txl-pbc"
    records += read_yolo(
        txl / "train/labels", txl / "train/images", txl / "classes.txt", None, report
    )
    return records


def merge_by_content(records: list[ImageRecord]) -> list[ImageRecord]:
    """One record per distinct image (sha256 of the file bytes), labels of the best source.

    BCCD, CBC and the TXL-PBC BloodImage_* files are byte-identical copies, so an exact hash
    suffices (checked on the shared data); the other records are kept as ``aliases``.
    """
    groups: dict[str, list[ImageRecord]] = {}
    for record in records:
        record.sha256 = record.sha256 or file_sha256(record.image_path)
        groups.setdefault(record.sha256, []).append(record)
    merged = []
    for digest in sorted(groups):
        group = sorted(
            groups[digest],
            key=lambda r: (
                SOURCE_PRIORITY.index(r.source)
                if r.source in SOURCE_PRIORITY
                else len(SOURCE_PRIORITY)
            ),
        )
        primary = group[0]
        primary.aliases = group[1:]
        merged.append(primary)
    return merged


def class_counts(records: Iterable[ImageRecord]) -> Counter:
    """Boxes per class over ``records``."""
    return Counter(box.label for record in records for box in record.boxes)
