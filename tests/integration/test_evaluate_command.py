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
