"""Count errors split into the slide's interior and the cells its border cuts."""

from __future__ import annotations

from bloodcount.evaluation import by_source, score_slide
from training.detector.border import count_errors, split_slide

W, H = 200, 100


def _cell(box, label="RBC", confidence=0.9):
    return {"box": list(box), "label": label, "confidence": confidence}


# Labels: an interior red cell found; a red sliver at the left edge found by a box that stops
# 3 px short of the edge; a red sliver at the bottom edge missed; an interior white cell.
TRUTH = [
    ((50, 40, 70, 60), "RBC"),
    ((0, 10, 12, 30), "RBC"),
    ((120, 90, 140, 100), "RBC"),
    ((150, 30, 180, 60), "WBC"),
]
# Detections: the two matches, an unlabelled interior red cell, an unlabelled sliver at the
# right edge, and the white cell.
CELLS = [
    _cell((50, 40, 70, 60)),
    _cell((3, 10, 12, 30)),
    _cell((90, 20, 110, 40)),
    _cell((190, 50, 200, 70)),
    _cell((150, 30, 180, 60), "WBC"),
]


def test_a_match_is_placed_where_its_label_is_and_the_rest_where_their_own_boxes_are():
    split = split_slide("s.jpg", "txl-bccd", CELLS, TRUTH, W, H)
    inner, border = split["interior"], split["border"]
    # The sliver's detection (3 px from the edge) counts on the border side with its label.
    assert inner.matches["RBC"] == (1, 2, 1)  # the interior match; the unlabelled cell
    assert border.matches["RBC"] == (1, 2, 2)  # the left sliver; right false, bottom missed
    assert inner.matches["WBC"] == (1, 1, 1) and border.matches["WBC"] == (0, 0, 0)
    assert inner.matches["Platelets"] == border.matches["Platelets"] == (0, 0, 0)
    assert inner.true_counts["RBC"] == 1 and border.pred_counts["RBC"] == 2


def test_the_two_regions_add_up_to_the_whole_slide():
    split = split_slide("s.jpg", "txl-bccd", CELLS, TRUTH, W, H)
    whole = score_slide("s.jpg", "txl-bccd", CELLS, TRUTH)
    for label, (tp, n_pred, n_true) in whole.matches.items():
        parts = [split[r].matches[label] for r in ("interior", "border")]
        assert tuple(map(sum, zip(*parts, strict=True))) == (tp, n_pred, n_true)


def test_the_margin_decides_which_boxes_touch_the_border():
    truth = [((3, 10, 20, 30), "RBC")]
    near = split_slide("s.jpg", "x", [], truth, W, H, margin=2)
    wide = split_slide("s.jpg", "x", [], truth, W, H, margin=3)
    assert near["interior"].true_counts["RBC"] == 1
    assert wide["border"].true_counts["RBC"] == 1


def test_count_errors_split_each_slides_error_by_region():
    first = split_slide("a.jpg", "txl-bccd", CELLS, TRUTH, W, H)
    # A second slide where the interior overcount and a border undercount cancel.
    second = split_slide(
        "b.jpg",
        "txl-bccd",
        [_cell((50, 40, 70, 60)), _cell((90, 40, 110, 60))],
        [((50, 40, 70, 60), "RBC"), ((0, 0, 10, 10), "RBC")],
        W,
        H,
    )
    scores = {r: [first[r], second[r]] for r in ("interior", "border")}
    red = count_errors(scores, by_source)["txl-bccd"]["RBC"]
    # Slide a: interior +1, border 0 (one false, one missed): whole +1.
    # Slide b: interior +1, border -1: whole 0.
    assert red["slides"] == 2
    assert red["whole"] == 0.5
    assert red["interior"] == 1.0 and red["border"] == 0.5
    assert red["interior_signed"] == 2 and red["border_signed"] == -1
    assert red["interior_true"] == 2 and red["border_true"] == 3
