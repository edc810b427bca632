"""``bloodcount evaluate`` on real annotated slides, and comparing two of its reports."""

from __future__ import annotations

import json

import pytest

from bloodcount.cli import main
from bloodcount.vision import CLASSES
from training.detector.compare import compare


def test_evaluate_scores_real_slides_per_source_and_keeps_per_slide_rows(data_dir, tmp_path):
    images = sorted((data_dir / "txl-pbc" / "train" / "images").glob("*.jpg"))
    chosen = [p.name for p in images if p.name.startswith("BloodImage_")][:2] + [
        p.name for p in images if not p.name.startswith("BloodImage_")
    ][:3]
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(chosen) + "\n")
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--dataset", str(data_dir / "txl-pbc" / "train"), "--format", "yolo"]
    argv += ["--images-list", str(listing), "--output", str(out), "--no-progress"]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "bloodcount.evaluation/v1" and doc["failed"] == []
    assert doc["warned"] == []  # real smears: none warned
    assert sorted(r["file"].rsplit("/", 1)[-1] for r in doc["slides"]) == sorted(chosen)
    assert (tmp_path / "eval.png").stat().st_size > 0
    for source, summary in doc["sources"].items():
        rows = [r for r in doc["slides"] if r["source"] == source]
        assert summary["slides"] == len(rows)
        for label in CLASSES:
            m = summary["classes"][label]
            for key in ("matched", "predicted", "true"):
                assert m[key] == sum(r["classes"][label][key] for r in rows)
            if m["true"]:
                low, high = m["f1_interval"]
                assert low <= m["f1"] <= high
    # The target groups pool their sources' slides: BCCD's lab, and the other labs.
    groups = {"BCCD lab": {"txl-bccd"}, "other labs (PBC, Raabin)": {"txl-pbc", "txl-raabin"}}
    assert set(doc["groups"]) == set(groups)
    for name, members in groups.items():
        rows = [r for r in doc["slides"] if r["source"] in members]
        assert doc["groups"][name]["slides"] == len(rows) > 0
        for label in CLASSES:
            matched = doc["groups"][name]["classes"][label]["matched"]
            assert matched == sum(r["classes"][label]["matched"] for r in rows)
    # The shipped detector finds most red cells on these slides: the rows are real scores.
    rbc = [r["classes"]["RBC"] for r in doc["slides"]]
    assert sum(c["matched"] for c in rbc) >= 0.8 * sum(c["true"] for c in rbc) > 0

    same = compare(out, out, draws=200)
    assert same["base"] == same["candidate"] and same["p_candidate_better"] == 0.0
    (tmp_path / "fewer.json").write_text(json.dumps({**doc, "slides": doc["slides"][1:]}))
    with pytest.raises(ValueError, match="same slides"):
        compare(out, tmp_path / "fewer.json")


def _cbc_like(data_dir, tmp_path, count: int = 2):
    """A VOC dataset laid out as CBC ships it: Annotations/ beside Images/ (not JPEGImages/)."""
    import shutil

    source = data_dir / "cbc" / "Testing"
    dataset = tmp_path / "cbc"
    (dataset / "Annotations").mkdir(parents=True)
    (dataset / "Images").mkdir()
    names = sorted(p.stem for p in (source / "Annotations").glob("*.xml"))[:count]
    for name in names:
        shutil.copy(source / "Annotations" / f"{name}.xml", dataset / "Annotations")
        shutil.copy(source / "Images" / f"{name}.jpg", dataset / "Images")
    return dataset, names


def test_evaluate_finds_the_images_of_other_layouts_and_says_why_none_were_scored(
    data_dir, tmp_path, capsys
):
    dataset, names = _cbc_like(data_dir, tmp_path)
    out = tmp_path / "new" / "folder" / "eval.json"  # made before the analysis
    argv = ["evaluate", "--dataset", str(dataset), "--format", "voc", "--no-progress"]
    assert main([*argv, "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert sorted(r["file"].rsplit("/", 1)[-1] for r in doc["slides"]) == [
        f"{n}.jpg" for n in names
    ]
    assert (out.parent / "eval.png").is_file()
    assert capsys.readouterr().err.count("voc (2 slides)") == 1  # source and group: once

    # Images elsewhere: named by --images; without it, the message says where it looked.
    moved = tmp_path / "pictures"
    (dataset / "Images").rename(moved)
    assert main([*argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"the images of 2 annotations are not in {dataset / 'JPEGImages'}" in err
    assert "--images DIR" in err
    assert main([*argv, "--images", str(moved), "--output", str(out)]) == 0

    # Slides from elsewhere are on no side of the committed split.
    (tmp_path / "other.jpg").write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("other.jpg\n")
    base = [*argv, "--images", str(moved), "--output", str(out)]
    capsys.readouterr()
    assert main([*base, "--images-list", str(listing)]) == 2
    assert "none of the 2 annotated images is named in" in capsys.readouterr().err
    # An output that cannot be written is refused before any slide is analysed.
    (tmp_path / "a-file").write_text("")
    assert (
        main([*argv, "--images", str(moved), "--output", str(tmp_path / "a-file" / "e.json")]) == 2
    )
    assert "cannot write" in capsys.readouterr().err


def test_evaluate_explains_that_slides_from_elsewhere_are_on_no_side_of_the_split(tmp_path, capsys):
    import cv2

    from tests.synthetic import make_smear

    smear = make_smear(seed=4, width=200, height=150)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    cv2.imwrite(str(tmp_path / "JPEGImages" / "new.jpg"), smear.image[:, :, ::-1])
    (tmp_path / "Annotations" / "new.xml").write_text(
        "<annotation><filename>new.jpg</filename><size><width>200</width>"
        "<height>150</height></size><object><name>RBC</name><bndbox><xmin>10</xmin>"
        "<ymin>10</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object></annotation>"
    )
    argv = ["evaluate", "--dataset", str(tmp_path), "--format", "voc", "--split", "test"]
    assert main([*argv, "--output", str(tmp_path / "e.json"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 annotated images is on the test side of the committed split" in err


def test_evaluate_reads_a_labs_own_yolo_and_csv_layouts(data_dir, tmp_path, capsys):
    """A lab's YOLO export (Ultralytics: images/val, labels/val, data.yaml) and a Kaggle-layout
    CSV lying among its images are scored; what the format needs and lacks is named."""
    txl = data_dir / "txl-pbc" / "train"
    names = sorted(p.stem for p in (txl / "images").glob("BloodImage_*"))[:2]
    lab = tmp_path / "lab"
    (lab / "images" / "val").mkdir(parents=True)
    (lab / "labels" / "val").mkdir(parents=True)
    for i, name in enumerate(names):
        (lab / "images" / "val" / f"s{i}.jpg").write_bytes(
            (txl / "images" / f"{name}.jpg").read_bytes()
        )
        (lab / "labels" / "val" / f"s{i}.txt").write_text(
            (txl / "labels" / f"{name}.txt").read_text()
        )
    argv = ["evaluate", "--format", "yolo", "--no-progress", "--output", str(tmp_path / "y.json")]
    assert main([*argv, "--dataset", str(lab)]) == 2
    assert "no class names for the YOLO labels" in capsys.readouterr().err
    (lab / "data.yaml").write_text("names: [WBC, RBC, Platelets]\n")  # TXL-PBC's class ids
    assert main([*argv, "--dataset", str(lab), "--source", "our-lab"]) == 0
    doc = json.loads((tmp_path / "y.json").read_text())
    assert list(doc["sources"]) == ["our-lab"] and doc["sources"]["our-lab"]["slides"] == 2
    assert doc["sources"]["our-lab"]["classes"]["RBC"]["true"] > 20
    # Without --source the TXL-PBC naming applies, and the run says so.
    assert main([*argv, "--dataset", str(lab)]) == 0
    assert "give --source NAME" in capsys.readouterr().err

    rows = ["image,xmin,ymin,xmax,ymax,label"]
    for i, name in enumerate(names):
        for line in (txl / "labels" / f"{name}.txt").read_text().splitlines():
            cls, cx, cy, w, h = line.split()
            x0, y0 = (float(cx) - float(w) / 2) * 640, (float(cy) - float(h) / 2) * 480
            label = ("wbc", "rbc", "platelet")[int(cls)]
            rows.append(
                f"s{i}.jpg,{x0:.0f},{y0:.0f},{x0 + float(w) * 640:.0f},{y0 + float(h) * 480:.0f},{label}"
            )
    export = lab / "images" / "val"
    (export / "boxes.csv").write_text("\n".join(rows) + "\n")
    argv = ["evaluate", "--format", "csv", "--no-progress", "--output", str(tmp_path / "c.json")]
    assert main([*argv, "--dataset", str(export)]) == 0  # its only CSV; images beside it
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["sources"]["csv"]["slides"] == 2
    (export / "other.csv").write_text("")
    assert main([*argv, "--dataset", str(export)]) == 2
    assert "it holds boxes.csv, other.csv: give one as --dataset FILE" in capsys.readouterr().err
