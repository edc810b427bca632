"""Which of the slide-analysis targets (issue 4) does a ``bloodcount evaluate`` report meet?

``python -m training.detector.targets REPORT.json [MORE.json ...]`` prints the 12 targets,
each report's figure and whether it is met, per lab group: for the BCCD lab (same lab),
total-count accuracy, MAE per slide and detection F1 for each class; for the other labs
(PBC and Raabin pooled), detection F1 for each class. A detector's shipping rule can count
them (training/README.md); a single cell moves several of them on a validation side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bloodcount.evaluation import LAB_GROUPS

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reports", type=Path, nargs="+")
    args = parser.parse_args(argv)
    docs = [json.loads(path.read_text()) for path in args.reports]
    names = [
        f"{d['model']['version']} ({path.name})" for d, path in zip(docs, args.reports, strict=True)
    ]
    print("| group | class | measure | target | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(docs))
    checked = [check(d) for d in docs]
    for i, (group, label, measure, target, _, _) in enumerate(checked[0]):
        cells = []
        for rows in checked:
            value, met = rows[i][4], rows[i][5]
            cells.append(
                ("-" if value is None else f"{value:.3f}") + (" met" if met else " MISSED")
            )
        print(f"| {group} | {label} | {measure} | {target} | " + " | ".join(cells) + " |")
    for name, rows in zip(names, checked, strict=True):
        print(f"{name}: {sum(r[5] for r in rows)} of {len(rows)} targets met")


if __name__ == "__main__":
    main()
