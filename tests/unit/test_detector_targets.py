"""The 12 slide-analysis targets, read from an evaluate report: bounds inclusive, and a lab
group the report lacks counts as missed, never as met."""

from __future__ import annotations

from training.detector.targets import OTHER_LABS, SAME_LAB, TARGETS, check


def _report(**same_lab_wbc) -> dict:
    perfect = {"count_accuracy": 1.0, "mae_per_slide": 0.0, "f1": 1.0}
    classes = {c: dict(perfect) for c in ("RBC", "WBC", "Platelets")}
    same = {c: dict(m) for c, m in classes.items()}
    same["WBC"].update(same_lab_wbc)
    return {"groups": {SAME_LAB: {"classes": same}, OTHER_LABS: {"classes": classes}}}


def test_twelve_targets_with_their_bounds_included():
    assert len(TARGETS) == 12
    assert all(row[5] for row in check(_report()))
    at_bounds = check(_report(count_accuracy=0.98, mae_per_slide=0.05, f1=0.98))
    assert all(row[5] for row in at_bounds)
    one_cell = check(_report(count_accuracy=0.952, mae_per_slide=0.053, f1=0.976))
    missed = [(g, c, m) for g, c, m, _, _, met in one_cell if not met]
    assert missed == [
        (SAME_LAB, "WBC", "count_accuracy"),
        (SAME_LAB, "WBC", "mae_per_slide"),
        (SAME_LAB, "WBC", "f1"),
    ]


def test_a_group_without_slides_meets_nothing():
    report = _report()
    del report["groups"][OTHER_LABS]
    rows = check(report)
    assert [r for r in rows if r[0] == OTHER_LABS and (r[5] or r[4] is not None)] == []
    assert sum(r[5] for r in rows) == 9
