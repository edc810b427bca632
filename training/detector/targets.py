"""Which of the slide-analysis targets (issue 4) does a ``bloodcount evaluate`` report meet?

``python -m training.detector.targets REPORT.json [MORE.json ...]`` prints the 12 targets,
each report's figure and whether it is met, per lab group: for the BCCD lab (same lab),
total-count accuracy, MAE per slide and detection F1 for each class; for the other labs
(PBC and Raabin pooled), detection F1 for each class. A detector's shipping rule can count
them (training/README.md); a single cell moves several of them on a validation side.

``--draws N`` adds, after each verdict, how often the target is met when each lab group's
slides are drawn again with replacement (N draws): a target met by one cell's margin shows
as about half, one met with room to spare as near 100%. With several reports of the same
slides it also says in how many paired draws each meets more targets than the first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bloodcount.evaluation import (
    LAB_GROUPS,
    by_lab_group,
    resampled_figures,
    scores_from_rows,
    slide_key,
)

# The groups bloodcount evaluate reports, named where they are defined.
SAME_LAB = LAB_GROUPS["txl-bccd"]
OTHER_LABS = LAB_GROUPS["txl-pbc"]

# (group, class, measure, at least (True) or at most (False), bound)
TARGETS = (
    *((SAME_LAB, c, "count_accuracy", True, 0.98) for c in ("RBC", "WBC", "Platelets")),
    (SAME_LAB, "RBC", "mae_per_slide", False, 1.5),
    (SAME_LAB, "WBC", "mae_per_slide", False, 0.05),
    (SAME_LAB, "Platelets", "mae_per_slide", False, 0.3),
    (SAME_LAB, "RBC", "f1", True, 0.92),
    (SAME_LAB, "WBC", "f1", True, 0.98),
    (SAME_LAB, "Platelets", "f1", True, 0.93),
    (OTHER_LABS, "RBC", "f1", True, 0.85),
    (OTHER_LABS, "WBC", "f1", True, 0.97),
    (OTHER_LABS, "Platelets", "f1", True, 0.80),
)


def check(report: dict) -> list[tuple[str, str, str, str, float | None, bool]]:
    """(group, class, measure, target, figure, met) for every target; a group the report
    lacks (no slides of it) leaves its targets unmet, with no figure."""
    rows = []
    for group, label, measure, at_least, bound in TARGETS:
        classes = report.get("groups", {}).get(group, {}).get("classes", {})
        value = classes.get(label, {}).get(measure)
        met = value is not None and (value >= bound if at_least else value <= bound)
        rows.append((group, label, measure, f"{'>=' if at_least else '<='} {bound:g}", value, met))
    return rows


def _met_per_draw(report: dict, draws: int, seed: int) -> list[np.ndarray | None]:
    """For each target, whether it is met in each draw (None: no slides of its group).

    Slides are put in one order (:func:`bloodcount.evaluation.slide_key`) before drawing, so two reports of the
    same slides with the same seed get the same draws: a paired comparison.
    """
    scores = sorted(scores_from_rows(report["slides"]), key=slide_key)
    figures = resampled_figures(scores, draws=draws, seed=seed, key=by_lab_group)
    met = []
    for group, label, measure, at_least, bound in TARGETS:
        if group not in figures:
            met.append(None)
            continue
        values = figures[group][label][measure]
        with np.errstate(invalid="ignore"):  # NaN (no true cell in the draw) compares False
            met.append(values >= bound if at_least else values <= bound)
    return met


def met_by_resampling(report: dict, draws: int = 2000, seed: int = 0) -> list[float | None]:
    """For each target, the share of draws in which it is met, each draw resampling every lab
    group's slides with replacement (from the report's per-slide rows); None where the report
    has no slides of the group. A draw with no true cell of a class has no F1 or count
    accuracy and counts as missed."""
    return [None if m is None else float(np.mean(m)) for m in _met_per_draw(report, draws, seed)]


def paired_targets(base: dict, candidate: dict, draws: int = 2000, seed: int = 0) -> dict:
    """Shares of paired draws (the same slides drawn for both reports) in which the candidate
    meets more, as many or fewer of the targets than the base."""

    def slides(report):
        return sorted(map(slide_key, scores_from_rows(report["slides"])))

    if slides(base) != slides(candidate):
        raise ValueError("the two reports did not score the same slides")
    totals = [
        sum(m for m in _met_per_draw(report, draws, seed) if m is not None)
        for report in (base, candidate)
    ]
    diff = np.asarray(totals[1]) - np.asarray(totals[0])
    return {
        "more": float(np.mean(diff > 0)),
        "as_many": float(np.mean(diff == 0)),
        "fewer": float(np.mean(diff < 0)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reports", type=Path, nargs="+")
    parser.add_argument(
        "--draws",
        type=int,
        default=0,
        help="also show how often each target is met over this many resamples of the slides",
    )
    args = parser.parse_args(argv)
    docs = [json.loads(path.read_text()) for path in args.reports]
    shares = [met_by_resampling(d, args.draws) if args.draws else None for d in docs]
    names = [
        f"{d['model']['version']} ({path.name})" for d, path in zip(docs, args.reports, strict=True)
    ]
    print("| group | class | measure | target | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(docs))
    checked = [check(d) for d in docs]
    for i, (group, label, measure, target, _, _) in enumerate(checked[0]):
        cells = []
        for rows, share in zip(checked, shares, strict=True):
            value, met = rows[i][4], rows[i][5]
            cell = ("-" if value is None else f"{value:.3f}") + (" met" if met else " MISSED")
            if share is not None and share[i] is not None:
                cell += f" ({share[i]:.0%})"
            cells.append(cell)
        print(f"| {group} | {label} | {measure} | {target} | " + " | ".join(cells) + " |")
    for name, rows in zip(names, checked, strict=True):
        print(f"{name}: {sum(r[5] for r in rows)} of {len(rows)} targets met")
    if not args.draws:
        return
    for name, doc in zip(names[1:], docs[1:], strict=True):
        try:
            p = paired_targets(docs[0], doc, args.draws)
        except ValueError as error:
            # Reports of two sides (validation, test) are each drawn on their own above.
            print(f"{name} against {names[0]}: no paired draws: {error}")
            continue
        print(
            f"{name} against {names[0]}, {args.draws} paired draws of the slides: more "
            f"targets met in {p['more']:.0%}, as many in {p['as_many']:.0%}, fewer in "
            f"{p['fewer']:.0%}"
        )


if __name__ == "__main__":
    main()
