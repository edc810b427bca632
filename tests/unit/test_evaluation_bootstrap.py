"""The bootstraps over slides: is a retrained detector's gain more than noise, and how wide
is the uncertainty of one figure."""

from __future__ import annotations

import pytest

from bloodcount.evaluation import (
    SlideScore,
    bootstrap_intervals,
    by_lab_group,
    macro_f1,
    paired_bootstrap,
    paired_bootstrap_over,
    scores_from_rows,
    slide_rows,
    summarise_by,
    summarise_by_source,
)


def _slide(i: int, source: str, rbc: tuple[int, int, int], plt: tuple[int, int, int]):
    matches = {"RBC": rbc, "WBC": (1, 1, 1), "Platelets": plt}
    return SlideScore(
        f"s{i}.jpg",
        source,
        {k: v[2] for k, v in matches.items()},
        {k: v[1] for k, v in matches.items()},
        matches,
    )


def _lab(rbc_hits: int = 18, platelet_hits: tuple[int, ...] = (1, 1, 1, 1)) -> list[SlideScore]:
    """Ten slides of 20 red cells in lab A; four slides of one platelet each in lab B."""
    a = [_slide(i, "A", (rbc_hits, 20, 20), (0, 0, 0)) for i in range(10)]
    b = [_slide(10 + i, "B", (20, 20, 20), (hit, 1, 1)) for i, hit in enumerate(platelet_hits)]
    return a + b


def test_the_same_model_twice_is_no_better():
    r = paired_bootstrap(_lab(), _lab(), draws=500)
    assert r["base"] == r["candidate"] == macro_f1(summarise_by_source(_lab()))
    assert r["difference_low"] == r["difference_high"] == 0.0
    assert r["p_candidate_better"] == 0.0


def test_a_gain_on_every_slide_is_sure_and_one_platelet_is_noise():
    sure = paired_bootstrap(_lab(rbc_hits=16), _lab(rbc_hits=18), draws=500, seed=1)
    assert sure["p_candidate_better"] == 1.0 and sure["difference_low"] > 0
    # Lab B's platelet F1 goes 0.75 -> 1.0 with one cell: +0.25 / 5 (source, class) pairs.
    one = paired_bootstrap(_lab(platelet_hits=(1, 1, 1, 0)), _lab(), draws=2000, seed=1)
    assert one["candidate"] - one["base"] == pytest.approx(0.05)
    # Resamples that leave that slide out see no difference: the interval reaches 0.
    assert one["difference_low"] == 0.0 < one["difference_high"]
    assert 0.55 < one["p_candidate_better"] < 0.8  # 1 - (3/4)^4 of resamples hold the slide


def test_slides_must_match_and_rows_round_trip():
    rows = slide_rows(_lab())
    assert rows[10]["classes"]["Platelets"] == {"matched": 1, "predicted": 1, "true": 1}
    assert scores_from_rows(rows) == _lab()
    with pytest.raises(ValueError, match="same slides"):
        paired_bootstrap(_lab(), _lab()[:-1])
    shuffled = _lab()[::-1]  # order does not matter; the file names pair the slides
    assert paired_bootstrap(_lab(), shuffled, draws=200)["difference_high"] == 0.0


def _changed(scores: list[SlideScore], change: str) -> list[SlideScore]:
    """The same slides re-scored from another folder as PNG, as robustness.py writes them."""
    return [
        SlideScore(
            f"var/rob/{change}/{s.source}/images/{s.file[:-4]}.png",
            s.source,
            s.true_counts,
            s.pred_counts,
            s.matches,
        )
        for s in scores
    ]


def test_over_conditions_a_slide_brings_all_its_versions():
    base, candidate = _lab(platelet_hits=(1, 1, 1, 0)), _lab()
    once = paired_bootstrap(base, candidate, draws=2000, seed=1)
    twice = paired_bootstrap_over(
        [(base, candidate), (_changed(base, "blur1"), _changed(candidate, "blur1")[::-1])],
        draws=2000,
        seed=1,
    )
    # The same change twice is the same evidence: were the conditions drawn independently,
    # the platelet slide would be missed by fewer resamples and the lead look surer.
    assert twice == once


def test_over_conditions_a_gain_under_blur_alone_counts_at_its_weight():
    clean = _lab()
    blurred_base = _changed(_lab(rbc_hits=14), "blur2")
    blurred_candidate = _changed(_lab(rbc_hits=18), "blur2")
    r = paired_bootstrap_over(
        [(clean, clean), (blurred_base, blurred_candidate)], draws=500, seed=1
    )
    lab_a_rbc = 2 * 18 / 40 - 2 * 14 / 40  # F1 of lab A's red cells, blurred, 0.7 -> 0.9
    # one of 5 (source, class) pairs, in one of two conditions
    assert r["candidate"] - r["base"] == pytest.approx(lab_a_rbc / 5 / 2)
    assert r["p_candidate_better"] == 1.0
    with pytest.raises(ValueError, match="same slides"):
        paired_bootstrap_over([(clean, clean), (blurred_base, blurred_candidate[1:])])


def test_intervals_hold_the_figure_and_widen_as_the_cells_get_few():
    scores = _lab(platelet_hits=(1, 1, 1, 0)) + [
        _slide(20 + i, "A", (18, 20, 20), (hit, 1, 1)) for i, hit in enumerate([1] * 30 + [0] * 10)
    ]
    sources = summarise_by_source(scores)
    intervals = bootstrap_intervals(scores, draws=1000)
    for source in ("A", "B"):
        low, high = intervals[source]["Platelets"]["f1"]
        assert low <= sources[source]["classes"]["Platelets"]["f1"] <= high
    width = {
        s: intervals[s]["Platelets"]["f1"][1] - intervals[s]["Platelets"]["f1"][0] for s in "AB"
    }
    assert width["B"] > 2 * width["A"] > 0  # 4 platelets against 40 at the same hit rate
    # Every slide perfect for white cells: no doubt at all.
    assert intervals["A"]["WBC"] == {"f1": [1.0, 1.0], "count_accuracy": [1.0, 1.0]}


def test_a_class_without_cells_has_no_interval():
    intervals = bootstrap_intervals(_lab(), draws=100)
    assert intervals["A"]["Platelets"] == {"f1": None, "count_accuracy": None}


def test_lab_groups_pool_the_other_labs_and_keep_unknown_sources_apart():
    scores = [
        _slide(0, "txl-pbc", (20, 20, 20), (1, 1, 1)),
        _slide(1, "txl-raabin", (10, 20, 20), (0, 2, 1)),
        _slide(2, "txl-bccd", (20, 20, 20), (1, 1, 1)),
        _slide(3, "lab-x", (5, 5, 5), (0, 0, 0)),
    ]
    groups = summarise_by(scores, by_lab_group)
    assert set(groups) == {"BCCD lab", "other labs (PBC, Raabin)", "lab-x"}
    other = groups["other labs (PBC, Raabin)"]["classes"]["Platelets"]
    assert (other["matched"], other["predicted"], other["true"]) == (1, 3, 2)
    assert other["f1"] == pytest.approx(2 * 1 / (3 + 2))
    intervals = bootstrap_intervals(scores, draws=200, key=by_lab_group)
    assert set(intervals) == set(groups)
    low, high = intervals["other labs (PBC, Raabin)"]["RBC"]["f1"]
    assert low < groups["other labs (PBC, Raabin)"]["classes"]["RBC"]["f1"] < high
