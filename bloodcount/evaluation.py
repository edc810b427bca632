"""Score slide analysis against annotated slides: counts and detections, per class and source.

Per class: total-count accuracy 1 - |sum predicted - sum true| / sum true (Alam & Islam
2019), per-slide mean absolute count error, and detection precision / recall / F1 at
IoU >= 0.5 with one-to-one matching, greedy by confidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np

from bloodcount.vision import CLASSES
from bloodcount.vision.geometry import as_boxes, iou_matrix

IOU_THRESHOLD = 0.5

# The targets' groups: the study's own lab ("same lab": BCCD slides, scored against TXL-PBC's
# complete labels) and the other labs (PBC and Raabin images), whose floors are set for the
# two pooled. Reports give each source too, so a miss inside a group shows.
LAB_GROUPS = {
    "txl-bccd": "BCCD lab",
    "bccd": "BCCD lab",
    "cbc": "BCCD lab",
    "txl-pbc": "other labs (PBC, Raabin)",
    "txl-raabin": "other labs (PBC, Raabin)",
}


def by_source(score: SlideScore) -> str:
    return score.source


def by_lab_group(score: SlideScore) -> str:
    return LAB_GROUPS.get(score.source, score.source)


@dataclass
class SlideScore:
    """One slide's truth and prediction, reduced to what the metrics need."""

    file: str
    source: str
    true_counts: dict[str, int]
    pred_counts: dict[str, int]
    matches: dict[str, tuple[int, int, int]]  # label -> (true positives, predicted, true)


def greedy_pairs(
    pred: np.ndarray, scores: np.ndarray, truth: np.ndarray, iou: float = IOU_THRESHOLD
) -> list[tuple[int, int]]:
    """(prediction, truth) index pairs matched one-to-one at IoU >= ``iou``, best score first."""
    pred, truth = as_boxes(pred), as_boxes(truth)
    if len(pred) == 0 or len(truth) == 0:
        return []
    ious = iou_matrix(pred, truth)
    taken = np.zeros(len(truth), dtype=bool)
    pairs = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou:
            taken[j] = True
            pairs.append((int(i), j))
    return pairs


def greedy_matches(
    pred: np.ndarray, scores: np.ndarray, truth: np.ndarray, iou: float = IOU_THRESHOLD
) -> int:
    """True positives: predictions matched one-to-one to truth at IoU >= ``iou``, best score first."""
    return len(greedy_pairs(pred, scores, truth, iou))


def score_slide(
    file: str,
    source: str,
    cells: list[dict[str, Any]],
    truth: Iterable[tuple[tuple[float, ...], str]],
) -> SlideScore:
    """Compare one slide's cells (contract dicts) with its true (box, label) pairs."""
    truth = list(truth)
    matches, true_counts, pred_counts = {}, {}, {}
    for label in CLASSES:
        t = [box for box, lab in truth if lab == label]
        p = [c for c in cells if c["label"] == label]
        tp = greedy_matches([c["box"] for c in p], [c["confidence"] for c in p], t)
        matches[label] = (tp, len(p), len(t))
        true_counts[label], pred_counts[label] = len(t), len(p)
    return SlideScore(file, source, true_counts, pred_counts, matches)


def _count_accuracy(predicted, true):
    """1 - |predicted - true| / true over totals (Alam & Islam 2019); scalars or arrays."""
    return 1 - np.abs(predicted - true) / true


def summarise(scores: list[SlideScore]) -> dict[str, Any]:
    """Per-class metrics over ``scores`` (one source), plus slide count and macro F1."""
    out: dict[str, Any] = {"slides": len(scores), "classes": {}}
    f1s = []
    for label in CLASSES:
        true = np.array([s.true_counts[label] for s in scores], dtype=float)
        pred = np.array([s.pred_counts[label] for s in scores], dtype=float)
        tp = sum(s.matches[label][0] for s in scores)
        n_pred, n_true = int(pred.sum()), int(true.sum())
        precision = tp / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
        recall = tp / n_true if n_true else 1.0
        # 2PR/(P+R) written as the bootstrap writes it (2 matched / (predicted + true)): the
        # same float operations, so the estimate cannot fall an ulp outside its own interval.
        f1 = 2 * tp / (n_pred + n_true) if n_true else (1.0 if n_pred == 0 else 0.0)
        f1s.append(f1)
        out["classes"][label] = {
            "true": n_true,
            "predicted": n_pred,
            "matched": int(tp),
            "count_accuracy": float(_count_accuracy(n_pred, n_true)) if n_true else None,
            "mae_per_slide": float(np.abs(pred - true).mean()) if len(scores) else None,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    out["macro_f1"] = float(np.mean(f1s))
    return out


def summarise_by_source(scores: list[SlideScore]) -> dict[str, Any]:
    """:func:`summarise` for each source separately (other labs are never pooled with ours)."""
    return summarise_by(scores, by_source)


def summarise_by(scores: list[SlideScore], key: Callable[[SlideScore], str]) -> dict[str, Any]:
    """:func:`summarise` for each group of slides that ``key`` names."""
    groups: dict[str, list[SlideScore]] = defaultdict(list)
    for s in scores:
        groups[key(s)].append(s)
    return {name: summarise(group) for name, group in sorted(groups.items())}


def macro_f1(sources: dict[str, Any]) -> float:
    """Mean F1 over every (source, class) with labelled cells: the detector's validation figure."""
    f1s = [m["f1"] for v in sources.values() for m in v["classes"].values() if m["true"]]
    return float(np.mean(f1s))


ROW_KEYS = ("matched", "predicted", "true")  # per class in a slide row, as SlideScore.matches


def slide_rows(scores: list[SlideScore]) -> list[dict[str, Any]]:
    """Per-slide (matched, predicted, true) per class: what a later paired comparison needs."""
    return [
        {
            "file": s.file,
            "source": s.source,
            "classes": {
                label: dict(zip(ROW_KEYS, s.matches[label], strict=True)) for label in CLASSES
            },
        }
        for s in scores
    ]


def scores_from_rows(rows: list[dict[str, Any]]) -> list[SlideScore]:
    """The inverse of :func:`slide_rows`."""
    out = []
    for row in rows:
        c = row["classes"]
        out.append(
            SlideScore(
                row["file"],
                row["source"],
                {label: c[label]["true"] for label in CLASSES},
                {label: c[label]["predicted"] for label in CLASSES},
                {label: tuple(c[label][k] for k in ROW_KEYS) for label in CLASSES},
            )
        )
    return out


def _match_counts(scores: list[SlideScore]) -> np.ndarray:
    """slides x classes x (matched, predicted, true)."""
    return np.array([[s.matches[label] for label in CLASSES] for s in scores], float)


def _resampled_sums(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Totals per draw, draws x classes x (matched, predicted, true); ``weights`` (draws x
    slides) says how often each slide was drawn, so a draw is one product, not a copy."""
    return np.einsum("dn,nck->dck", weights, counts)


def _draws(rng: np.random.Generator, slides: int, draws: int) -> np.ndarray:
    return rng.multinomial(slides, np.full(slides, 1 / slides), size=draws)


def _f1(sums: np.ndarray) -> np.ndarray:
    """F1 = 2 * matched / (predicted + true); NaN where a draw has no true cells."""
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * sums[..., 0] / (sums[..., 1] + sums[..., 2])
    return np.where(sums[..., 2] > 0, f1, np.nan)


def resampled_figures(
    scores: list[SlideScore],
    draws: int = 2000,
    seed: int = 0,
    key: Callable[[SlideScore], str] = by_source,
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """{group: {class: {"f1" | "count_accuracy" | "mae_per_slide": one value per draw}}}, each
    draw resampling the group's slides with replacement (groups: ``key``). NaN where a draw
    has no true cell of the class (F1 and count accuracy are undefined there)."""
    rng = np.random.default_rng(seed)
    counts = _match_counts(scores)
    out = {}
    for group in sorted({key(s) for s in scores}):
        idx = np.array([i for i, s in enumerate(scores) if key(s) == group])
        weights = _draws(rng, len(idx), draws)
        sums = _resampled_sums(counts[idx], weights)
        errors = np.abs(counts[idx, :, 1] - counts[idx, :, 2])  # slides x classes
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = _count_accuracy(sums[..., 1], sums[..., 2])
        figures = {
            "f1": _f1(sums),
            "count_accuracy": np.where(sums[..., 2] > 0, accuracy, np.nan),
            "mae_per_slide": weights @ errors / len(idx),
        }
        out[group] = {
            label: {name: values[:, c] for name, values in figures.items()}
            for c, label in enumerate(CLASSES)
        }
    return out


def bootstrap_intervals(
    scores: list[SlideScore],
    draws: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    key: Callable[[SlideScore], str] = by_source,
) -> dict[str, dict[str, dict[str, list[float] | None]]]:
    """{group: {class: {"f1": [low, high], "count_accuracy": [low, high]}}}: percentile
    intervals from resampling each group's slides with replacement (groups: ``key``, by
    default the source).

    A figure from a few cells is a coarse one: three platelets give an F1 whose interval
    spans most of [0, 1]. The interval is None where no draw had a true cell.
    """
    tail = 100 * (1 - level) / 2
    return {
        group: {
            label: {name: _interval(figures[name], tail) for name in ("f1", "count_accuracy")}
            for label, figures in classes.items()
        }
        for group, classes in resampled_figures(scores, draws, seed, key).items()
    }


def _interval(values: np.ndarray, tail: float) -> list[float] | None:
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def paired_bootstrap(
    base: list[SlideScore], candidate: list[SlideScore], draws: int = 5000, seed: int = 0
) -> dict[str, float]:
    """How sure is "candidate beats base" on macro F1? Resample slides, paired and per source.

    Both lists score the same slides. Each draw resamples every source's slides with
    replacement (the same draw for both models) and recomputes :func:`macro_f1`, whose F1s
    are 2 * matched / (predicted + true). With only a handful of cells in some (source,
    class) pairs, a single cell moves the figure by a few hundredths: this says how much.
    """
    return paired_bootstrap_over([(base, candidate)], draws, seed)


def slide_key(s: SlideScore) -> tuple[str, str]:
    """(source, name without folder or suffix): what pairs one slide across evaluations."""
    # A slide keeps its name (not its folder or suffix) when it is changed and re-scored.
    return s.source, PurePath(s.file).stem


def _aligned(scores: list[SlideScore], order: dict[tuple[str, str], int]) -> list[SlideScore]:
    keys = [slide_key(s) for s in scores]
    if sorted(keys) != sorted(order) or len(set(keys)) != len(keys):
        raise ValueError("the evaluations did not score the same slides")
    return sorted(scores, key=lambda s: order[slide_key(s)])


def paired_bootstrap_over(
    conditions: list[tuple[list[SlideScore], list[SlideScore]]], draws: int = 5000, seed: int = 0
) -> dict[str, float]:
    """:func:`paired_bootstrap` of macro F1 averaged over conditions, each a (base, candidate)
    pair scoring the same slides changed one way (as they are, blurred, compressed...).

    A draw picks slides per source once and every condition of both models uses that draw:
    a slide is drawn with all its versions, so one hard slide is not counted as several
    independent ones.
    """
    reference = conditions[0][0]
    order = {slide_key(s): i for i, s in enumerate(reference)}
    if len(order) != len(reference):
        raise ValueError("two slides of one source have the same name")
    pairs = [(_aligned(a, order), _aligned(b, order)) for a, b in conditions]
    counts = [(_match_counts(a), _match_counts(b)) for a, b in pairs]
    rng = np.random.default_rng(seed)
    sources = sorted({s.source for s in reference})
    f1_a: list[list[np.ndarray]] = [[] for _ in pairs]
    f1_b: list[list[np.ndarray]] = [[] for _ in pairs]
    for source in sources:
        idx = np.array([i for i, s in enumerate(reference) if s.source == source])
        weights = _draws(rng, len(idx), draws)
        for c, (a, b) in enumerate(counts):
            # classes with no cells in a draw are NaN and drop out of the mean
            f1_a[c].append(_f1(_resampled_sums(a[idx], weights)))
            f1_b[c].append(_f1(_resampled_sums(b[idx], weights)))
    macro_a = np.mean([np.nanmean(np.concatenate(f, axis=1), axis=1) for f in f1_a], axis=0)
    macro_b = np.mean([np.nanmean(np.concatenate(f, axis=1), axis=1) for f in f1_b], axis=0)
    diff = macro_b - macro_a
    return {
        "base": float(np.mean([macro_f1(summarise_by_source(a)) for a, _ in pairs])),
        "candidate": float(np.mean([macro_f1(summarise_by_source(b)) for _, b in pairs])),
        "difference_low": float(np.percentile(diff, 2.5)),
        "difference_high": float(np.percentile(diff, 97.5)),
        "p_candidate_better": float(np.mean(diff > 0)),
        "draws": draws,
    }


def plot_counts(scores: list[SlideScore], path: str) -> None:
    """Scatter of predicted vs true counts per slide, one panel per class, coloured by source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bloodcount.vision.draw import CLASS_COLOURS

    fig, axes = plt.subplots(1, len(CLASSES), figsize=(4 * len(CLASSES), 4))
    sources = sorted({s.source for s in scores})
    markers = dict(zip(sources, "os^Dv<>", strict=False))
    for ax, label in zip(axes, CLASSES, strict=True):
        top = 1
        for source in sources:
            group = [s for s in scores if s.source == source]
            t = [s.true_counts[label] for s in group]
            p = [s.pred_counts[label] for s in group]
            top = max([top, *t, *p])
            ax.scatter(
                t,
                p,
                s=14,
                alpha=0.6,
                marker=markers[source],
                color=CLASS_COLOURS[label],
                label=source,
            )
        ax.plot([0, top], [0, top], color="grey", lw=1)
        ax.set(title=label, xlabel="true count per slide", ylabel="predicted count per slide")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
