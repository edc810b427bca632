"""Readers, merging and the committed split on the real shared data."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from training import split as split_mod
from training.datasets import (
    ReadReport,
    class_counts,
    merge_by_content,
    read_csv_boxes,
    read_shared_data,
    read_voc,
)

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def records(data_dir: Path):
    return read_shared_data(data_dir, ReadReport())


@pytest.fixture(scope="module")
def merged(records):
    return merge_by_content(records)


def test_totals_match_the_readme_table(records) -> None:
    by_source = {}
    for r in records:
        key = "txl" if r.source.startswith("txl") else r.source
        by_source.setdefault(key, []).append(r)
    assert {k: len(v) for k, v in by_source.items()} == {"bccd": 292, "cbc": 289, "txl": 824}
    # README: 3350/301/292, 3337/298/290, 13071/854/418; two 0-width RBC boxes each in
    # BCCD and CBC are skipped as inverted (x1 <= x0), nothing else is.
    assert class_counts(by_source["bccd"]) == {"RBC": 3348, "WBC": 301, "Platelets": 292}
    assert class_counts(by_source["cbc"]) == {"RBC": 3335, "WBC": 298, "Platelets": 290}
    assert class_counts(by_source["txl"]) == {"RBC": 13071, "WBC": 854, "Platelets": 418}


def test_voc_box_counts_per_file_match_the_xml(data_dir: Path) -> None:
    report = ReadReport()
    records = read_voc(data_dir / "bccd/Annotations", data_dir / "bccd/JPEGImages", "bccd", report)
    skipped = Counter(m.split(" object ")[0] for m in report.messages)
    for r in records:
        objects = len(ET.parse(r.labels_path).getroot().findall("object"))
        assert len(r.boxes) + skipped.get(str(r.labels_path), 0) == objects, r.labels_path


def test_yolo_box_counts_per_file_match_the_lines(records) -> None:
    for r in (r for r in records if r.fmt == "yolo"):
        lines = [ln for ln in r.labels_path.read_text().splitlines() if ln.strip()]
        assert len(r.boxes) == len(lines), r.labels_path


def test_bccd_csv_equals_bccd_voc(data_dir: Path) -> None:
    voc = read_voc(data_dir / "bccd/Annotations", data_dir / "bccd/JPEGImages", "bccd")
    csv = read_csv_boxes(data_dir / "bccd/annotations.csv", data_dir / "bccd/JPEGImages", "bccd")

    def as_set(recs):
        return sorted((r.image_path.name, b.label, b.xyxy) for r in recs for b in r.boxes)

    assert as_set(csv) == as_set(voc)


def test_txl_subsources_are_told_apart(records) -> None:
    txl = Counter((r.source, r.width, r.height) for r in records if r.fmt == "yolo")
    assert txl[("txl-bccd", 640, 480)] == 124
    assert txl[("txl-raabin", 575, 575)] == 350
    assert sum(n for (s, _, _), n in txl.items() if s == "txl-pbc") == 350


def test_shared_images_are_merged_by_content(merged) -> None:
    # 292 BCCD (CBC's 289 and TXL's 124 BloodImage_* are byte-identical copies) + 700 others
    assert len(merged) == 992
    assert len({r.sha256 for r in merged}) == 992
    assert Counter(r.source for r in merged) == {
        "txl-pbc": 350,
        "txl-raabin": 350,
        "bccd": 168,
        "txl-bccd": 124,
    }


def test_committed_manifest_is_reproducible(merged, data_dir: Path) -> None:
    rebuilt = split_mod.build_manifest(merged, data_dir)
    assert rebuilt == split_mod.load_split()


def test_no_image_on_two_sides(merged) -> None:
    manifest = split_mod.load_split()
    sides = split_mod.split_records(merged, manifest)
    hashes = {side: {r.sha256 for r in recs} for side, recs in sides.items()}
    assert not hashes["train"] & hashes["val"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]
    # every alias of a test image is also held out, whichever source reaches it
    names = {
        side: {str(v.image_path) for r in recs for v in (r, *r.aliases)}
        for side, recs in sides.items()
    }
    assert not names["train"] & names["test"]
    total = sum(len(v) for v in sides.values())
    assert abs(len(sides["test"]) / total - 0.15) < 0.01
    assert abs(len(sides["train"]) / total - 0.70) < 0.01


def test_split_is_stratified_by_class(merged) -> None:
    sides = split_mod.split_records(merged, split_mod.load_split())
    total = class_counts(merged)
    for side, share in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        counts = class_counts(sides[side])
        for cls, n in total.items():
            assert abs(counts[cls] / n - share) < 0.04, (side, cls)


def test_held_out_images_per_source(data_dir: Path) -> None:
    for source, at_least in (
        ("bccd", 30),
        ("cbc", 30),
        ("txl-bccd", 15),
        ("txl-pbc", 40),
        ("txl-raabin", 40),
    ):
        images = split_mod.held_out_images(source, data_dir=data_dir)
        assert len(images) >= at_least, source
        assert all(i["image"].is_file() and i["labels"].is_file() for i in images)
        assert {i["source"] for i in images} == {source}
    primary = split_mod.held_out_images(data_dir=data_dir)
    assert len(primary) == len({i["sha256"] for i in primary}) == 149
