"""Readers on small hand-written fixtures: both CSV layouts, YOLO conversion, and bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from training.datasets import (
    DataError,
    ReadReport,
    merge_by_content,
    normalise_label,
    read_csv_boxes,
    read_labels,
    read_voc,
    read_yolo,
    txl_subsource,
)

VOC = """<annotation><filename>{name}</filename>
<size><width>64</width><height>48</height><depth>3</depth></size>
{objects}</annotation>"""
OBJ = "<object><name>{label}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"


def _image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return path


def _voc(folder: Path, name: str, objects: list[tuple]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = "".join(OBJ.format(label=o[0], x0=o[1], y0=o[2], x1=o[3], y1=o[4]) for o in objects)
    path = folder / (Path(name).stem + ".xml")
    path.write_text(VOC.format(name=name, objects=body))
    return path


def test_labels_are_normalised() -> None:
    assert normalise_label(" rbc ") == "RBC"
    assert normalise_label("White Blood Cell") == "WBC"
    assert normalise_label("platelet") == "Platelets"
    # A white cell's type is still a white cell: datasets that label the differential count.
    assert normalise_label("Neutrophils") == normalise_label("basophil") == "WBC"
    assert normalise_label("debris") is None


def test_voc_reads_boxes_and_counts_problems(tmp_path: Path) -> None:
    _image(tmp_path / "img/a.jpg")
    _voc(
        tmp_path / "ann",
        "a.jpg",
        [
            ("RBC", 1, 2, 20, 22),
            ("wbc", 30, 10, 70, 40),  # runs off the right edge: clipped, kept
            ("Debris", 1, 1, 10, 10),  # unknown label
            ("RBC", 100, 100, 120, 120),  # wholly outside the 64x48 image
            ("RBC", 10, 10, 10, 30),  # no area
        ],
    )
    (tmp_path / "ann/broken.xml").write_text("<annotation><object>")  # malformed XML
    _voc(tmp_path / "ann", "missing.jpg", [("RBC", 1, 1, 9, 9)])  # image not there
    report = ReadReport()
    records = read_voc(tmp_path / "ann", tmp_path / "img", "bccd", report)
    assert len(records) == 1
    assert [(b.label, b.xyxy) for b in records[0].boxes] == [
        ("RBC", (1.0, 2.0, 20.0, 22.0)),
        ("WBC", (30.0, 10.0, 64.0, 40.0)),
    ]
    assert report.counts == {
        "unknown label": 1,
        "box outside image": 1,
        "inverted box": 1,
        "malformed file": 1,
        "missing image": 1,
        "box clipped to image": 1,
    }
    assert any("broken.xml" in m and "malformed XML" in m for m in report.messages)
    assert any("a.xml object 3" in m and "Debris" in m for m in report.messages)
    assert "missing image" in report.summary()


def test_strict_mode_stops_at_first_problem(tmp_path: Path) -> None:
    _image(tmp_path / "img/a.jpg")
    _voc(tmp_path / "ann", "a.jpg", [("Artifact", 1, 1, 9, 9)])
    with pytest.raises(DataError, match=r"a\.xml object 1: unknown label 'Artifact'"):
        read_voc(tmp_path / "ann", tmp_path / "img", "bccd", ReadReport(strict=True))


def test_unreadable_image_is_skipped_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img/a.jpg").write_bytes(b"not a jpeg at all")
    _voc(tmp_path / "ann", "a.jpg", [("RBC", 1, 1, 9, 9)])
    report = ReadReport()
    assert read_voc(tmp_path / "ann", tmp_path / "img", "bccd", report) == []
    assert report.counts == {"unreadable image": 1}
    assert "a.jpg" in report.messages[0]


@pytest.mark.parametrize("layout", ["bccd", "kaggle"])
def test_both_csv_layouts_give_the_same_boxes(tmp_path: Path, layout: str) -> None:
    _image(tmp_path / "img/a.jpg")
    if layout == "bccd":  # filename,cell_type,xmin,xmax,ymin,ymax
        text = (
            "filename,cell_type,xmin,xmax,ymin,ymax\na.jpg,RBC,1,20,2,22\na.jpg,WBC,30,60,10,40\n"
        )
    else:  # image,xmin,ymin,xmax,ymax,label
        text = "image,xmin,ymin,xmax,ymax,label\na.jpg,1,2,20,22,rbc\na.jpg,30,10,60,40,WBC\n"
    (tmp_path / "boxes.csv").write_text(text)
    records = read_csv_boxes(tmp_path / "boxes.csv", tmp_path / "img", "x")
    assert [(b.label, b.xyxy) for b in records[0].boxes] == [
        ("RBC", (1.0, 2.0, 20.0, 22.0)),
        ("WBC", (30.0, 10.0, 60.0, 40.0)),
    ]


def test_csv_bad_lines_are_named_by_line(tmp_path: Path) -> None:
    _image(tmp_path / "img/a.jpg")
    (tmp_path / "b.csv").write_text(
        "image,xmin,ymin,xmax,ymax,label\n"
        "a.jpg,1,2,20,22,RBC\n"
        "a.jpg,1,2,20\n"  # line 3: too few fields
        "a.jpg,one,2,20,22,RBC\n"  # line 4: not a number
        "a.jpg,1,2,20,22,Blast\n"  # line 5: unknown label
        "gone.jpg,1,2,20,22,RBC\n"
    )  # line 6: missing image
    report = ReadReport()
    records = read_csv_boxes(tmp_path / "b.csv", tmp_path / "img", "x", report)
    assert len(records) == 1 and len(records[0].boxes) == 1
    joined = "\n".join(report.messages)
    for line in (3, 4, 5):
        assert f"b.csv:{line}:" in joined
    assert "gone.jpg" in joined
    assert report.counts == {"malformed line": 2, "unknown label": 1, "missing image": 1}


def test_csv_unknown_header_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("name,x,y,w,h,class\n")
    with pytest.raises(DataError, match=r"c\.csv:1: unrecognised CSV header"):
        read_csv_boxes(tmp_path / "c.csv", tmp_path, "x")


def test_yolo_converts_relative_centres_to_pixels(tmp_path: Path) -> None:
    _image(tmp_path / "images/p.jpg", w=100, h=50)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/p.txt").write_text(
        "0 0.5 0.5 0.2 0.4\n"  # WBC: centre (50, 25), 20 x 20
        "1 0.1 0.1 0.4 0.4\n"  # RBC cut by the top-left corner: clipped
        "7 0.5 0.5 0.1 0.1\n"  # line 3: class id not in classes.txt
        "1 0.5 0.5\n"  # line 4: too few fields
        "\n"
    )
    (tmp_path / "classes.txt").write_text("WBC\nRBC\nPlatelets\n")
    report = ReadReport()
    records = read_yolo(
        tmp_path / "labels", tmp_path / "images", tmp_path / "classes.txt", "t", report
    )
    boxes = [(b.label, tuple(round(v, 6) for v in b.xyxy)) for b in records[0].boxes]
    assert boxes == [("WBC", (40.0, 15.0, 60.0, 35.0)), ("RBC", (0.0, 0.0, 30.0, 15.0))]
    assert report.counts["unknown label"] == 1 and report.counts["malformed line"] == 1
    assert any("p.txt:3" in m for m in report.messages)
    assert any("p.txt:4" in m for m in report.messages)


def test_yolo_image_without_label_file_is_counted(tmp_path: Path) -> None:
    _image(tmp_path / "images/q.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "classes.txt").write_text("WBC\nRBC\nPlatelets\n")
    report = ReadReport()
    assert (
        read_yolo(tmp_path / "labels", tmp_path / "images", tmp_path / "classes.txt", "t", report)
        == []
    )
    assert report.counts == {"missing labels": 1}


def test_yolo_unknown_class_name_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("WBC\nDebris\n")
    (tmp_path / "labels").mkdir()
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"classes\.txt:2"):
        read_yolo(tmp_path / "labels", tmp_path / "images", tmp_path / "classes.txt")


def test_txl_subsources() -> None:
    assert txl_subsource("BloodImage_00001.jpg", 640, 480) == "txl-bccd"
    assert txl_subsource("0a1b.jpg", 575, 575) == "txl-raabin"
    assert txl_subsource("0a1b.jpg", 360, 363) == "txl-pbc"


def test_same_bytes_through_two_sources_are_kept_once(tmp_path: Path) -> None:
    a = _image(tmp_path / "bccd/img/a.jpg", seed=1)
    (tmp_path / "txl/images").mkdir(parents=True)
    (tmp_path / "txl/images/BloodImage_a.jpg").write_bytes(a.read_bytes())
    _image(tmp_path / "bccd/img/b.jpg", seed=2)
    _voc(tmp_path / "bccd/ann", "a.jpg", [("RBC", 1, 1, 9, 9)])
    _voc(tmp_path / "bccd/ann", "b.jpg", [("RBC", 1, 1, 9, 9)])
    (tmp_path / "txl/labels").mkdir()
    (tmp_path / "txl/labels/BloodImage_a.txt").write_text("1 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.1 0.1\n")
    (tmp_path / "classes.txt").write_text("WBC\nRBC\nPlatelets\n")
    records = read_voc(tmp_path / "bccd/ann", tmp_path / "bccd/img", "bccd")
    records += read_yolo(tmp_path / "txl/labels", tmp_path / "txl/images", tmp_path / "classes.txt")
    merged = merge_by_content(records)
    assert len(merged) == 2
    shared = next(r for r in merged if r.aliases)
    assert shared.source == "txl-bccd"  # the complete labels win
    assert [a.source for a in shared.aliases] == ["bccd"]
    assert len(shared.boxes) == 2


def _ultralytics(root: Path) -> None:
    """An Ultralytics-layout dataset: images/{train,val}, labels/{train,val}, data.yaml."""
    for part in ("train", "val"):
        _image(root / f"images/{part}/{part}1.jpg")
        (root / f"labels/{part}").mkdir(parents=True)
        (root / f"labels/{part}/{part}1.txt").write_text("2 0.5 0.5 0.2 0.4\n")
    _image(root / "images/val/._val1.jpg")  # a macOS resource fork: not an image to read
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: RBC\n  1: WBC\n  2: platelet\n"
    )


def test_yolo_reads_ultralytics_layout_and_its_class_names(tmp_path: Path) -> None:
    _ultralytics(tmp_path)
    report = ReadReport()
    records = read_labels("yolo", tmp_path / "labels", None, report, source="lab")
    assert sorted(r.image_path.name for r in records) == ["train1.jpg", "val1.jpg"]
    assert {b.label for r in records for b in r.boxes} == {"Platelets"}
    assert {r.source for r in records} == {"lab"} and report.counts == {}
    # One part, given by its images folder, finds its labels where YOLO looks for them.
    (val,) = read_labels("yolo", tmp_path / "labels", tmp_path / "images/val")
    assert val.labels_path == tmp_path / "labels/val/val1.txt"


def test_yolo_class_names_from_obj_names_or_a_clear_error(tmp_path: Path) -> None:
    _image(tmp_path / "images/a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    with pytest.raises(DataError, match=r"no class names .*classes\.txt, obj\.names, data\.yaml"):
        read_labels("yolo", tmp_path / "labels")
    (tmp_path / "obj.names").write_text("leukocyte\n")
    (record,) = read_labels("yolo", tmp_path / "labels")
    assert [b.label for b in record.boxes] == ["WBC"]
    (tmp_path / "data.yaml").write_text("names: {0: WBC, 2: RBC}\n")
    (tmp_path / "obj.names").unlink()
    with pytest.raises(DataError, match=r"data\.yaml: class ids \[0, 2\] are not 0..1"):
        read_labels("yolo", tmp_path / "labels")
