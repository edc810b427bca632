"""Train/validation/test split by source image, stratified, and its committed manifest.

The manifest (``training/splits/default.json``) lists image hashes and relative paths only,
so every evaluation, including the slide-analysis one on the ``test`` side, is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from training.datasets import (
    CELL_CLASSES,
    ImageRecord,
    default_data_dir,
    merge_by_content,
    read_shared_data,
)

SIDES = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
DEFAULT_SEED = 20240603
MANIFEST_PATH = Path(__file__).resolve().parent / "splits" / "default.json"
SCHEMA = "bloodcount.split/v1"


def _stratum(record: ImageRecord) -> tuple[str, bool, bool]:
    """Source and which rare classes an image holds: images alike share a stratum."""
    labels = {box.label for box in record.boxes}
    return (record.source, "WBC" in labels, "Platelets" in labels)


def assign_sides(
    records: list[ImageRecord],
    seed: int = DEFAULT_SEED,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> dict[str, str]:
    """sha256 -> side. Each image (a content-hash group) goes to exactly one side.

    Images are bucketed by source and by whether they hold WBC / platelets, shuffled with
    ``seed``, and each bucket is cut 70/15/15, so every source and class is on every side.
    """
    buckets: dict[tuple, list[ImageRecord]] = {}
    for record in sorted(records, key=lambda r: r.sha256):
        buckets.setdefault(_stratum(record), []).append(record)
    rng = random.Random(seed)
    sides: dict[str, str] = {}
    carry = [0.0, 0.0, 0.0]  # rounding remainders carried across buckets keep totals on target
    for key in sorted(buckets):
        bucket = buckets[key]
        rng.shuffle(bucket)
        want = [len(bucket) * f + c for f, c in zip(fractions, carry, strict=True)]
        n_val, n_test = round(want[1]), round(want[2])
        n_val = min(n_val, len(bucket))
        n_test = min(n_test, len(bucket) - n_val)
        carry = [0.0, want[1] - n_val, want[2] - n_test]
        for i, record in enumerate(bucket):
            side = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            sides[record.sha256] = side
    return sides


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def build_manifest(
    records: list[ImageRecord],
    data_dir: Path,
    seed: int = DEFAULT_SEED,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> dict[str, Any]:
    """Manifest dict for merged ``records``: ids, hashes, sources, sides; no pixels."""
    sides = assign_sides(records, seed, fractions)
    images = []
    for record in sorted(records, key=lambda r: r.sha256):
        views = [record, *record.aliases]
        images.append(
            {
                "sha256": record.sha256,
                "id": _rel(record.image_path, data_dir),
                "source": record.source,
                "side": sides[record.sha256],
                "width": record.width,
                "height": record.height,
                "counts": {c: sum(b.label == c for b in record.boxes) for c in CELL_CLASSES},
                # Every source the same bytes arrive through, with its own labels file.
                "views": [
                    {
                        "source": v.source,
                        "format": v.fmt,
                        "image": _rel(v.image_path, data_dir),
                        "labels": _rel(v.labels_path, data_dir),
                    }
                    for v in views
                ],
            }
        )
    return {
        "schema": SCHEMA,
        "seed": seed,
        "fractions": dict(zip(SIDES, fractions, strict=True)),
        "grouping": "sha256 of the image file bytes (BCCD/CBC/TXL copies are byte-identical)",
        "stratified_by": "source, and whether the image holds WBC / platelets",
        "labels_from": "most complete source: txl-* over bccd over cbc",
        "data_root": "paths are relative to the shared data folder ($BLOODCOUNT_DATA or ../shared/data)",
        "summary": summarise(images),
        "images": images,
    }


def summarise(images: list[dict[str, Any]]) -> dict[str, Any]:
    """Images per source and side, and labelled boxes per class and side."""
    per_source: dict[str, Counter] = {}
    boxes: dict[str, Counter] = {side: Counter() for side in SIDES}
    for entry in images:
        per_source.setdefault(entry["source"], Counter())[entry["side"]] += 1
        boxes[entry["side"]].update(entry["counts"])
    return {
        "images": {s: dict(sorted(c.items())) for s, c in sorted(per_source.items())},
        "boxes": {side: dict(c) for side, c in boxes.items()},
    }


def write_manifest(manifest: dict[str, Any], path: Path = MANIFEST_PATH) -> str:
    """Write the manifest as stable JSON; return its sha256."""
    # One image a line: diffable, and a third of the size of an indented dump.
    head = {k: v for k, v in manifest.items() if k != "images"}
    lines = [json.dumps(entry, separators=(",", ":")) for entry in manifest.get("images", [])]
    text = json.dumps(head, indent=1)[:-2] + ',\n "images": [\n' + ",\n".join(lines) + "\n ]\n}\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_sha256(path: Path = MANIFEST_PATH) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_split(path: Path | str | None = None) -> dict[str, Any]:
    """The split manifest (default: the committed ``training/splits/default.json``)."""
    return json.loads(Path(path or MANIFEST_PATH).read_text())


def held_out_images(
    source: str | None = None,
    side: str = "test",
    path: Path | str | None = None,
    data_dir: Path | str | None = None,
) -> list[dict[str, Any]]:
    """Images on ``side`` (default the held-out test side) with absolute image/labels paths.

    ``source`` picks the view: ``None`` gives each image once with its primary (most
    complete) labels; "bccd", "cbc", "txl-bccd", "txl-pbc" or "txl-raabin" gives the test
    images reachable through that source, with that source's labels.
    """
    root = Path(data_dir) if data_dir else default_data_dir()
    out = []
    for entry in load_split(path)["images"]:
        if entry["side"] != side:
            continue
        views = entry["views"] if source else entry["views"][:1]
        for view in views:
            if source and view["source"] != source:
                continue
            out.append(
                {
                    "sha256": entry["sha256"],
                    "id": entry["id"],
                    "source": view["source"],
                    "primary_source": entry["source"],
                    "format": view["format"],
                    "image": root / view["image"],
                    "labels": root / view["labels"],
                    "width": entry["width"],
                    "height": entry["height"],
                }
            )
    return out


def split_records(
    records: list[ImageRecord], manifest: dict[str, Any]
) -> dict[str, list[ImageRecord]]:
    """Merged records grouped by their side in ``manifest`` (records not in it are an error)."""
    sides = {entry["sha256"]: entry["side"] for entry in manifest["images"]}
    out: dict[str, list[ImageRecord]] = {side: [] for side in SIDES}
    for record in records:
        if record.sha256 not in sides:
            raise KeyError(f"{record.image_path} (sha256 {record.sha256[:12]}) is not in the split")
        out[sides[record.sha256]].append(record)
    return out


def main() -> None:  # pragma: no cover - regenerates the committed manifest
    data_dir = default_data_dir()
    records = merge_by_content(read_shared_data(data_dir))
    digest = write_manifest(build_manifest(records, data_dir))
    print(json.dumps(load_split()["summary"], indent=1))
    print("sha256", digest)


if __name__ == "__main__":  # pragma: no cover
    main()
