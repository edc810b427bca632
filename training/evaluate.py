"""Classification metrics in NumPy (no scikit-learn), and their JSON/PNG/text reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...] | list[str]
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro F1 and the confusion matrix."""
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    per_class = {}
    f1s = []
    for i, name in enumerate(classes):
        tp = cm[i, i]
        precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        recall = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": round(float(precision), 5),
            "recall": round(float(recall), 5),
            "f1": round(float(f1), 5),
            "support": int(cm[i].sum()),
        }
        if cm[i].sum():
            f1s.append(f1)
    total = int(cm.sum())
    return {
        "n": total,
        "accuracy": round(float(np.trace(cm) / total), 5) if total else 0.0,
        "macro_f1": round(float(np.mean(f1s)), 5) if f1s else 0.0,
        "errors": int(total - np.trace(cm)),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(classes), "rows_true_cols_predicted": cm.tolist()},
    }


def cell_metrics(probs: np.ndarray, y_true: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """The study's 3-class figures, for crops whose truth is a cell.

    ``background_included``: argmax over all outputs (a cell called background is an error).
    ``background_excluded``: argmax over the cell classes only.
    """
    cells = [i for i, c in enumerate(classes) if c != "background"]
    mask = np.isin(y_true, cells)
    p, t = probs[mask], y_true[mask]
    out = {
        "background_excluded": metrics(
            t, np.asarray(cells)[p[:, cells].argmax(1)], [classes[i] for i in cells]
        )
    }
    if len(cells) < len(classes):
        out["background_included"] = metrics(t, p.argmax(1), classes)
        out["background_included"]["per_class"] = {
            c: v for c, v in out["background_included"]["per_class"].items() if c != "background"
        }
    return out


def report_text(m: dict[str, Any], title: str) -> str:
    """A classification report in the usual text layout."""
    lines = [title, f"{'':>12} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for name, v in m["per_class"].items():
        lines.append(
            f"{name:>12} {v['precision']:9.4f} {v['recall']:9.4f} {v['f1']:9.4f} {v['support']:8d}"
        )
    lines.append(f"{'accuracy':>12} {m['accuracy']:29.4f} {m['n']:8d}")
    lines.append(f"{'macro F1':>12} {m['macro_f1']:29.4f}")
    cm = m["confusion_matrix"]
    lines.append("confusion matrix (rows true, columns predicted): " + " ".join(cm["labels"]))
    lines += ["  " + " ".join(f"{v:6d}" for v in row) for row in cm["rows_true_cols_predicted"]]
    return "\n".join(lines) + "\n"


def plot_confusion(m: dict[str, Any], path: Path, title: str) -> None:
    """Confusion matrix PNG with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(m["confusion_matrix"]["rows_true_cols_predicted"])
    labels = m["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(5, 4.4))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and accuracy per epoch (both phases, one axis), training vs validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key, [])
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=(prefix or "train_") + key)
        for x in history.get("phase_boundaries", []):
            ax.axvline(x + 0.5, color="grey", lw=0.8)
        ax.set_xlabel("epoch (grey line: phase 1 -> phase 2)")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_reports(out_dir: Path, test: dict[str, Any], history: dict[str, list[float]]) -> None:
    """confusion_matrix.{json,png}, classification_report.txt and training_curves.png."""
    out_dir = Path(out_dir)
    full = test["all_classes"]
    (out_dir / "confusion_matrix.json").write_text(
        json.dumps(
            {
                "split": "test",
                **full["confusion_matrix"],
                "cells_background_excluded": test["cells"]["background_excluded"][
                    "confusion_matrix"
                ],
            },
            indent=1,
        )
        + "\n"
    )
    plot_confusion(full, out_dir / "confusion_matrix.png", "test split (image-grouped)")
    text = report_text(full, "Test split, all classes")
    for key, m in test["cells"].items():
        text += "\n" + report_text(m, f"Test split, 3 cell classes, {key.replace('_', ' ')}")
    (out_dir / "classification_report.txt").write_text(text)
    plot_curves(history, out_dir / "training_curves.png")
