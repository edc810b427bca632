"""``bloodcount analyze`` end to end on real slides with the shipped detector: JSON, CSV, overlays."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcount.cli import main
from bloodcount.config import load_settings
from bloodcount.schemas import validate
from bloodcount.vision.dense_detector import DETECTOR_DIR


@pytest.fixture(scope="module")
def classifier_dir():
    path = load_settings().model_path
    if not (path / "model.tflite").is_file():
        pytest.skip(f"no classifier shipped at {path} yet")
    return path


def test_analyze_writes_the_contract_and_survives_a_bad_file(data_dir, tmp_path):
    # The default pipeline runs the detector shipped in the package: no skip if it is missing.
    slides = sorted((data_dir / "bccd" / "JPEGImages").glob("*.jpg"))[:3]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(slides[0].read_bytes()[:2000])
    # Output folders that do not exist yet are made (before the analysis, not after it).
    out, table = tmp_path / "results" / "out.json", tmp_path / "tables" / "out.csv"
    overlays = tmp_path / "ov"
    args = [
        "analyze",
        *map(str, slides),
        str(bad),
        "--output",
        str(out),
        "--csv",
        str(table),
        "--overlays",
        str(overlays),
        "--no-progress",
    ]
    assert main(args) == 0
    document = json.loads(out.read_text())
    validate(document)
    card = json.loads((DETECTOR_DIR / "card.json").read_text())
    assert document["model"] == {k: card[k] for k in ("name", "version", "sha256")}
    status = {s["file"]: s["status"] for s in document["slides"]}
    assert status[str(bad)] == "error" and all(status[str(p)] == "ok" for p in slides)
    assert all(s["counts"]["RBC"] > 0 for s in document["slides"] if s["status"] == "ok")
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 4 and len(list(overlays.glob("*.jpg"))) == 3
    # Real slides are cut by their borders: the counting frame drops the cells cut by the
    # right and bottom edges, and the CSV carries both counts.
    for row, slide in zip(rows, document["slides"], strict=True):
        for label in ("RBC", "WBC", "Platelets"):
            assert row[f"frame_{label}"] == str(slide["frame_counts"][label])
    ok = [s for s in document["slides"] if s["status"] == "ok"]
    assert all(s["frame_counts"]["RBC"] <= s["counts"]["RBC"] for s in ok)
    assert any(s["frame_counts"]["RBC"] < s["counts"]["RBC"] for s in ok)


def test_analyze_classical_method_records_the_classifier(data_dir, classifier_dir, tmp_path):
    slide = sorted((data_dir / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    out = tmp_path / "out.json"
    args = ["analyze", str(slide), "--method", "classical", "--output", str(out), "--no-progress"]
    assert main(args) == 0
    document = json.loads(out.read_text())
    validate(document)
    assert (
        document["model"]["sha256"]
        == json.loads((classifier_dir / "card.json").read_text())["sha256"]
    )


def test_analyze_usage_errors_exit_non_zero(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing.jpg"), "--output", "-"]) == 2
    assert main(["analyze", str(tmp_path), "--output", "-"]) == 2  # a folder with no images
    # An output that cannot be written is refused before any slide is analysed.
    (tmp_path / "a-file").write_text("")
    slide = tmp_path / "slide.png"
    cv2.imwrite(str(slide), np.full((40, 40, 3), 200, np.uint8))
    capsys.readouterr()
    assert main(["analyze", str(slide), "--output", str(tmp_path / "a-file" / "x.json")]) == 2
    assert "cannot write" in capsys.readouterr().err and not (tmp_path / "a-file.json").exists()
    assert main(["analyze", str(slide), "--output", "-", "--csv", str(tmp_path)]) == 2
    assert "it is a folder" in capsys.readouterr().err


def test_analyze_warns_about_slides_it_cannot_vouch_for(data_dir, tmp_path, capsys):
    """A real smear and a field of noise: both counted, only the noise carries a warning,
    in the JSON, the CSV and a line on stderr."""
    real = sorted((data_dir / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    noise = tmp_path / "noise.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(noise), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    out, table = tmp_path / "out.json", tmp_path / "out.csv"
    args = ["analyze", str(real), str(noise), "-o", str(out), "--csv", str(table), "--no-progress"]
    assert main(args) == 0
    document = json.loads(out.read_text())
    validate(document)
    smear, field = document["slides"]
    assert smear["status"] == field["status"] == "ok"
    assert smear["warnings"] == []
    assert [w["code"] for w in field["warnings"]] == ["no_red_cells"]
    assert [row["warnings"] for row in csv.DictReader(table.open())] == ["", "no_red_cells"]
    assert "1 of 2 slides were counted with warnings" in capsys.readouterr().err


def test_analyze_csv_hands_a_spreadsheet_no_formula(data_dir, tmp_path, monkeypatch):
    """A file named like a formula, given as a relative path, arrives in the CSV as text
    (as in the API's reports), and the JSON keeps the name as given."""
    real = sorted((data_dir / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "=HYPERLINK(1).jpg").write_bytes(real.read_bytes())
    args = ["analyze", "=HYPERLINK(1).jpg", "-o", "out.json", "--csv", "out.csv", "--no-progress"]
    assert main(args) == 0
    assert (
        json.loads((tmp_path / "out.json").read_text())["slides"][0]["file"] == "=HYPERLINK(1).jpg"
    )
    (row,) = csv.DictReader((tmp_path / "out.csv").open())
    assert row["file"] == "'=HYPERLINK(1).jpg" and row["status"] == "ok"


def test_analyze_a_folder_with_a_pipe_and_a_name_that_is_not_utf8(data_dir, tmp_path):
    """A named pipe called like an image is passed over (opening it would wait forever), and
    a Latin-1 file name reaches the JSON and the CSV as valid text, its odd byte as \\xNN."""
    import os

    real = sorted((data_dir / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "s.jpg").mkdir()  # a folder named like an image is not one either
    os.mkfifo(folder / "pipe.jpg")
    latin = os.fsdecode(bytes(folder) + b"/caf\xe9.jpg")
    Path(latin).write_bytes(real.read_bytes())
    out, table = tmp_path / "out.json", tmp_path / "out.csv"
    argv = ["analyze", str(folder), "-o", str(out), "--csv", str(table), "--no-progress"]
    assert main(argv) == 0
    (slide,) = json.loads(out.read_text(encoding="utf-8"))["slides"]
    assert slide["file"] == f"{folder}/caf\\xe9.jpg" and slide["status"] == "ok"
    (row,) = csv.DictReader(table.open(encoding="utf-8"))
    assert row["file"] == slide["file"]
