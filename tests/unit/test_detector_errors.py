"""Error audit: which predictions and labels are left unmatched, as the evaluation counts them."""

from __future__ import annotations

import numpy as np

from bloodcount.evaluation import greedy_matches, greedy_pairs
from training.detector.errors import slide_mistakes

RBC, WBC, PLT = 0, 1, 2


def test_pairs_go_to_the_most_confident_prediction_first():
    truth = np.array([[0, 0, 10, 10]], float)
    pred = np.array([[0, 0, 10, 9], [0, 0, 10, 10]], float)  # both overlap the one label
    assert greedy_pairs(pred, [0.4, 0.9], truth) == [(1, 0)]
    assert greedy_pairs(pred, [0.9, 0.4], truth) == [(0, 0)]
    assert greedy_matches(pred, [0.9, 0.4], truth) == 1


def test_pairs_need_the_iou_and_are_one_to_one():
    truth = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], float)
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [104, 100, 114, 110]], float)
    # The duplicate finds its label taken; the shifted box overlaps 6/14 < 0.5.
    assert greedy_pairs(pred, [0.9, 0.8, 0.7], truth) == [(0, 0)]
    assert greedy_pairs([], [], truth) == []


def test_mistakes_are_the_unmatched_boxes_of_each_class():
    true_boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [200, 200, 240, 240]], float)
    true_labels = np.array([RBC, PLT, WBC])
    pred_boxes = np.array(
        [
            [0, 0, 10, 10],  # the red cell, found
            [50, 50, 60, 60],  # the platelet, called a red cell: FP RBC and FN platelet
            [300, 300, 310, 310],  # nothing there: FP platelet
            [201, 200, 241, 240],  # the white cell, found
        ],
        float,
    )
    pred_labels = np.array([RBC, RBC, PLT, WBC])
    scores = np.array([0.9, 0.6, 0.5, 0.95])
    got = slide_mistakes("s.jpg", "lab", pred_boxes, pred_labels, scores, true_boxes, true_labels)
    summary = sorted((m.label, m.kind, tuple(m.box), m.nearest, m.nearest_iou) for m in got)
    assert summary == [
        ("Platelets", "FN", (50, 50, 60, 60), "RBC", 1.0),
        ("Platelets", "FP", (300, 300, 310, 310), None, 0.0),
        ("RBC", "FP", (50, 50, 60, 60), "Platelets", 1.0),
    ]
    fp = {m.label: m.confidence for m in got if m.kind == "FP"}
    assert fp == {"RBC": 0.6, "Platelets": 0.5}
    assert all(m.confidence is None for m in got if m.kind == "FN")


def test_a_slide_with_no_predictions_misses_every_label():
    got = slide_mistakes(
        "s.jpg",
        "lab",
        np.zeros((0, 4)),
        np.zeros(0, int),
        np.zeros(0),
        np.array([[0, 0, 10, 10]], float),
        np.array([WBC]),
    )
    assert [(m.label, m.kind, m.nearest) for m in got] == [("WBC", "FN", None)]
