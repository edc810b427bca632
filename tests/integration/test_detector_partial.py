"""BCCD-only slides as partly labelled detector data, on the real shared slides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bloodcount.vision import CLASSES
from bloodcount.vision.geometry import iou_matrix
from training.datasets import file_sha256
from training.detector import partial, pseudo
from training.detector.data import batch_at, txl_records
from training.split import load_split


def test_bccd_only_slides_come_from_the_train_side_and_are_not_txl_slides(data_dir):
    records = partial.bccd_records("train", data_dir)
    assert len(records) == 118
    sides = {e["sha256"]: e["side"] for e in load_split()["images"]}
    digests = {file_sha256(r.image_path) for r in records}
    assert {sides[d] for d in digests} == {"train"}
    txl = {
        file_sha256(r.image_path)
        for side in ("train", "val", "test")
        for r in txl_records(side, data_dir)
    }
    assert not digests & txl


def test_the_check_measures_how_completely_bccd_boxes_what_txl_boxes(data_dir):
    # The numbers partial.py's docstring and training/README quote.
    found = partial.check(data_dir)
    assert found["Platelets interior"] == {"txl": 110, "bccd_found": 92}
    assert found["Platelets border"] == {"txl": 32, "bccd_found": 17}
    assert found["WBC interior"] == {"txl": 77, "bccd_found": 77}
    assert found["WBC border"] == {"txl": 53, "bccd_found": 49}


def test_a_partial_slide_teaches_white_cells_and_platelets_but_not_where_labels_may_miss(data_dir):
    record = next(
        r
        for r in partial.bccd_records("train", data_dir)
        if {"RBC", "Platelets"} <= {b.label for b in r.boxes}
    )
    find = [300.0, 200.0, 320.0, 220.0, "Platelets"]
    slide = partial.partial_slide(record, [find])
    assert set(slide.labels.tolist()) <= {CLASSES.index("WBC"), CLASSES.index("Platelets")}
    assert (slide.labels == CLASSES.index("Platelets")).any()
    assert slide.ignored_classes == (CLASSES.index("RBC"),)
    # Four border strips for each of the two classes, then the find, grown about its centre.
    assert len(slide.ignore_boxes) == 9
    np.testing.assert_allclose(slide.ignore_boxes[-1], [295, 195, 325, 225])
    assert slide.ignore_labels[-1] == CLASSES.index("Platelets")
    _, packed = batch_at([slide], 4, 160, seed=0, index=0)
    weights = packed[..., 8:]
    assert (weights[..., 0] == 0).all() and (weights[..., 1:] == 0).any()
    assert (weights[..., 1:] == 1).mean() > 0.5


def test_unlabelled_finds_are_white_cells_or_platelets_bccd_did_not_box(data_dir, tmp_path):
    records = partial.bccd_records("train", data_dir)[:12]
    result = partial.unlabelled_finds(records)
    assert result["detector"]["name"] and set(result["finds"]) == {
        r.image_path.name for r in records
    }
    rows = [(r, row) for r in records for row in result["finds"][r.image_path.name]]
    assert rows, "the shipped detector finds no unboxed platelet on 12 BCCD slides"
    for record, (*box, name) in rows:
        assert name in partial.TRAINED
        theirs = np.array([b.xyxy for b in record.boxes if b.label == name]).reshape(-1, 4)
        if len(theirs):
            assert iou_matrix(np.array([box]), theirs).max() < partial.MATCH_IOU
    # A finds file that lacks a train-side slide is refused, naming the fix.
    path = tmp_path / "finds.json"
    path.write_text(json.dumps(result))
    with pytest.raises(SystemExit, match="training.detector.partial --out"):
        partial.partial_slides(path, data_dir)


def test_border_only_ignores_the_border_band_and_nothing_else(data_dir, tmp_path, capsys):
    path = tmp_path / "border.json"
    partial.main(["--out", str(path), "--border-only"])
    assert "118 train-side BCCD slides, 0 unlabelled finds" in capsys.readouterr().out
    document = json.loads(path.read_text())
    assert document["detector"] is None and len(document["finds"]) == 118
    slides = partial.partial_slides(path, data_dir)
    assert len(slides) == 118
    # Four border strips for each of white cells and platelets, no find.
    assert {len(s.ignore_boxes) for s in slides} == {8}


@pytest.mark.slow
def test_training_with_partial_adds_the_bccd_slides_and_logs_the_file(data_dir, tmp_path):
    pytest.importorskip("tensorflow")
    from training.detector.train import train

    finds = tmp_path / "finds.json"
    finds.write_text(json.dumps(partial.unlabelled_finds(partial.bccd_records("train", data_dir))))
    train(
        tmp_path / "run",
        steps=2,
        lr=1e-3,
        weights=None,
        data_dir=data_dir,
        export=False,
        partial=finds,
        batch=2,
        crop=96,
        seed=0,
        limit=2,
        log_every=1,
    )
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert log["train_slides"] == 4 and log["partial"] == str(finds)  # 2 TXL-PBC + 2 BCCD-only


def test_a_pseudo_labelled_slide_teaches_red_cells_from_confident_finds_and_bccd_boxes(data_dir):
    def red_boxes(r):
        return [
            list(b.xyxy) for b in r.boxes if b.label == "RBC" and min(b.x1 - b.x0, b.y1 - b.y0) >= 4
        ]

    record = next(r for r in partial.bccd_records("train", data_dir) if len(red_boxes(r)) >= 3)
    red = red_boxes(record)
    first, second = red[0], red[1]
    sure = [first[0] + 1, first[1] + 1, first[2] + 1, first[3] + 1, 0.9]  # BCCD's first box, found
    second_peak = [*sure[:4], 0.3]  # a weaker peak on the same cell
    on_bccd = [*second, 0.3]  # unsure, but a person boxed it
    alone = [600.0, 440.0, 630.0, 470.0, 0.3]  # unsure, nothing settles it
    slide = pseudo.pseudo_slide(record, [sure, second_peak, on_bccd, alone], threshold=0.45)
    rbc = CLASSES.index("RBC")
    assert (slide.labels == rbc).all()
    assert slide.ignored_classes == (CLASSES.index("WBC"), CLASSES.index("Platelets"))
    # The confident find once, then BCCD's other red boxes (the first is the same cell).
    np.testing.assert_allclose(slide.boxes[0], sure[:4])
    assert len(slide.boxes) == 1 + len(red) - 1
    assert iou_matrix(slide.boxes[1:], np.array([first], np.float32)).max() < 0.3
    np.testing.assert_allclose(slide.ignore_boxes, [alone[:4]])
    assert slide.ignore_labels.tolist() == [rbc]
    _, packed = batch_at([slide], 4, 160, seed=0, index=0)
    weights = packed[..., 8:]
    assert (weights[..., 1:] == 0).all() and (weights[..., 0] == 1).mean() > 0.5


def test_train_reads_a_pseudo_label_file_as_pseudo_labelled_slides(data_dir, tmp_path):
    records = partial.bccd_records("train", data_dir)
    doc = {"mode": pseudo.MODE, "detector": None, "threshold": 0.45, "finds": {}}
    doc["finds"] = {r.image_path.name: [] for r in records}
    path = tmp_path / "pseudo.json"
    path.write_text(json.dumps(doc))
    slides = partial.partial_slides(path, data_dir)
    assert len(slides) == 118
    assert all(s.ignored_classes == (1, 2) for s in slides)
    del doc["finds"][records[0].image_path.name]
    path.write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="no finds for 1 train-side BCCD slides.*pseudo --out"):
        partial.partial_slides(path, data_dir)
