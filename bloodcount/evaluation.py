"""Score slide analysis against annotated slides: counts and detections, per class and source.

Per class: total-count accuracy 1 - |sum predicted - sum true| / sum true (Alam & Islam
2019), per-slide mean absolute count error, and detection precision / recall / F1 at
IoU >= 0.5 with one-to-one matching, greedy by confidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bloodcount.vision import CLASSES
from bloodcount.vision.geometry import as_boxes, iou_matrix

IOU_THRESHOLD = 0.5


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
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        out["classes"][label] = {
            "true": n_true,
            "predicted": n_pred,
            "matched": int(tp),
            "count_accuracy": (1 - abs(n_pred - n_true) / n_true) if n_true else None,
            "mae_per_slide": float(np.abs(pred - true).mean()) if len(scores) else None,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    out["macro_f1"] = float(np.mean(f1s))
    return out


def summarise_by_source(scores: list[SlideScore]) -> dict[str, Any]:
    """:func:`summarise` for each source separately (other labs are never pooled with ours)."""
    groups: dict[str, list[SlideScore]] = defaultdict(list)
    for s in scores:
        groups[s.source].append(s)
    return {source: summarise(group) for source, group in sorted(groups.items())}


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
