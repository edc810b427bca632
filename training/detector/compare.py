"""Is a retrained detector really better? Compare two ``bloodcount evaluate`` reports slide by slide.

``python -m training.detector.compare BASE.json CANDIDATE.json`` prints each (source, class)
F1 for both models and the macro F1 difference with a 95% interval from a paired bootstrap
over slides (:func:`bloodcount.evaluation.paired_bootstrap`). Both reports must come from
``bloodcount evaluate`` on the same slides (e.g. ``--split val``), one per model folder
(``BLOODCOUNT_DETECTOR_PATH``). Use it to write a shipping rule that noise cannot pass:
validation has only a few platelets in some sources, so one cell moves the macro F1 by 0.025.

``compare BASE_DIR CANDIDATE_DIR --changes x1,blur1,blur2,jpeg50`` compares two
``training.detector.robustness --out`` folders instead: the macro F1 averaged over those
changes, resampling each slide with all its versions
(:func:`bloodcount.evaluation.paired_bootstrap_over`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bloodcount.evaluation import paired_bootstrap, paired_bootstrap_over, scores_from_rows


def _load(path: Path):
    doc = json.loads(path.read_text())
    if "slides" not in doc:
        raise SystemExit(f"{path}: no per-slide rows; re-run bloodcount evaluate to write them")
    return doc, scores_from_rows(doc["slides"])


def compare(base: Path, candidate: Path, draws: int = 5000, seed: int = 0) -> dict:
    """The paired bootstrap of ``candidate`` over ``base``, with both models' identities."""
    (doc_a, a), (doc_b, b) = _load(base), _load(candidate)
    result = paired_bootstrap(a, b, draws=draws, seed=seed)
    result["base_model"], result["candidate_model"] = doc_a["model"], doc_b["model"]
    result["per_class"] = {
        f"{source}/{label}": (
            round(m["f1"], 4),
            round(doc_b["sources"][source]["classes"][label]["f1"], 4),
            m["true"],
        )
        for source, summary in doc_a["sources"].items()
        for label, m in summary["classes"].items()
        if m["true"]
    }
    return result


def _changed_scores(folder: Path, change: str):
    """(model, scores) of one change in a robustness.py folder: its sources' reports, pooled."""
    reports = sorted((folder / change).glob("*/evaluation.json"))
    if not reports:
        raise SystemExit(
            f"{folder / change}: no evaluation.json; run python -m training.detector.robustness "
            f"--side val --changes {change} --out {folder}"
        )
    loaded = [_load(report) for report in reports]
    return loaded[0][0]["model"], [s for _, scores in loaded for s in scores]


def compare_changes(
    base: Path, candidate: Path, changes: list[str], draws: int = 5000, seed: int = 0
) -> dict:
    """The paired bootstrap of macro F1 averaged over ``changes``, from two robustness folders."""
    conditions, per_change = [], {}
    for change in changes:
        model_a, a = _changed_scores(base, change)
        model_b, b = _changed_scores(candidate, change)
        conditions.append((a, b))
        one = paired_bootstrap(a, b, draws=draws, seed=seed)
        per_change[change] = (round(one["base"], 4), round(one["candidate"], 4))
    result = paired_bootstrap_over(conditions, draws=draws, seed=seed)
    result["base_model"], result["candidate_model"] = model_a, model_b
    result["per_change"] = per_change
    return result


def _version(model: dict) -> str:
    return f"{model.get('version', '?')} ({str(model.get('sha256', ''))[:12]})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", type=Path, help="a report, or with --changes a folder")
    parser.add_argument("candidate", type=Path, help="a report, or with --changes a folder")
    parser.add_argument(
        "--changes", help="comma-separated changes of two robustness.py --out folders"
    )
    parser.add_argument("--draws", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.changes:
        changes = [c.strip() for c in args.changes.split(",")]
        r = compare_changes(args.base, args.candidate, changes, args.draws, args.seed)
        what = f"macro F1 averaged over {', '.join(changes)}"
    else:
        r = compare(args.base, args.candidate, args.draws, args.seed)
        what = "macro F1"
    print(f"base {_version(r['base_model'])} -> candidate {_version(r['candidate_model'])}")
    for key, (fa, fb, true) in r.get("per_class", {}).items():
        print(f"  {key:24} F1 {fa:.3f} -> {fb:.3f}  ({true} cells)")
    for change, (fa, fb) in r.get("per_change", {}).items():
        print(f"  {change:10} macro F1 {fa:.4f} -> {fb:.4f}")
    print(
        f"{what} {r['base']:.4f} -> {r['candidate']:.4f}: difference 95% interval "
        f"[{r['difference_low']:+.4f}, {r['difference_high']:+.4f}], "
        f"candidate better in {r['p_candidate_better']:.0%} of {r['draws']} resamples"
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
