"""Is a retrained detector really better? Compare two ``bloodcount evaluate`` reports slide by slide.

``python -m training.detector.compare BASE.json CANDIDATE.json`` prints each (source, class)
F1 for both models and the macro F1 difference with a 95% interval from a paired bootstrap
over slides (:func:`bloodcount.evaluation.paired_bootstrap`). Both reports must come from
``bloodcount evaluate`` on the same slides (e.g. ``--split val``), one per model folder
(``BLOODCOUNT_DETECTOR_PATH``). Use it to write a shipping rule that noise cannot pass:
validation has only a few platelets in some sources, so one cell moves the macro F1 by 0.025.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bloodcount.evaluation import paired_bootstrap, scores_from_rows


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


def _version(model: dict) -> str:
    return f"{model.get('version', '?')} ({str(model.get('sha256', ''))[:12]})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--draws", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    r = compare(args.base, args.candidate, args.draws, args.seed)
    print(f"base {_version(r['base_model'])} -> candidate {_version(r['candidate_model'])}")
    for key, (fa, fb, true) in r["per_class"].items():
        print(f"  {key:24} F1 {fa:.3f} -> {fb:.3f}  ({true} cells)")
    print(
        f"macro F1 {r['base']:.4f} -> {r['candidate']:.4f}: difference 95% interval "
        f"[{r['difference_low']:+.4f}, {r['difference_high']:+.4f}], "
        f"candidate better in {r['p_candidate_better']:.0%} of {r['draws']} resamples"
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
