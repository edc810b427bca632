"""Copy a trained model folder into ``bloodcount/models/default``, with the profile table.

``python -m training.install var/models/default-96 --compare var/models/*`` installs the
first folder and records every compared run (input size, alpha, test figures, time) in its card.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from training.train import write_card

INSTALL_DIR = Path(__file__).resolve().parents[1] / "bloodcount" / "models" / "default"
INSTALL_FILES = (
    "model.tflite",
    "model.keras",
    "card.json",
    "card.md",
    "confusion_matrix.png",
    "confusion_matrix.json",
    "training_curves.png",
    "classification_report.txt",
)
MAX_KERAS_BYTES = 10_000_000


def profile_row(card: dict[str, Any], note: str = "") -> dict[str, Any]:
    """One line of the profile table from a model card."""
    cells = card["metrics"]["test"]["cells"]
    ex = cells["background_excluded"]
    inc = cells.get("background_included")
    return {
        "profile": card["profile"],
        "input_size": card["input_size"],
        "alpha": card["alpha"],
        "classes": len(card["classes"]),
        "accuracy": ex["accuracy"],
        "macro_f1": ex["macro_f1"],
        "per_class_f1": {c: v["f1"] for c, v in ex["per_class"].items()},
        "accuracy_background_included": inc["accuracy"] if inc else None,
        "train_seconds": round(card["training"]["seconds"]),
        "epochs_run": card["training"].get("epochs_run"),
        "command": card["command"],
        "note": note,
    }


def install(model_dir: Path, target: Path = INSTALL_DIR, compare: list[str] | None = None) -> Path:
    """Copy the model files (``.keras`` only if under 10 MB); ``compare`` (``DIR[:NOTE]``)
    folders make the card's profile table."""
    model_dir = Path(model_dir)
    target.mkdir(parents=True, exist_ok=True)
    for name in INSTALL_FILES:
        src = model_dir / name
        if name == "model.keras" and src.is_file() and src.stat().st_size > MAX_KERAS_BYTES:
            (target / name).unlink(missing_ok=True)
            continue  # keep the repository lean; the .tflite is what the service runs
        if src.is_file():
            shutil.copy2(src, target / name)
    if compare:
        card = json.loads((target / "card.json").read_text())
        rows = []
        for item in compare:
            folder, _, note = str(item).partition(":")
            path = Path(folder) / "card.json"
            if path.is_file():
                other = json.loads(path.read_text())
                shipped = other["sha256"] == card["sha256"]
                rows.append(
                    profile_row(
                        other, "; ".join(filter(None, ["shipped" if shipped else "", note]))
                    )
                )
        card["profiles_table"] = rows
        write_card(target, card)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument(
        "--compare",
        nargs="*",
        default=[],
        metavar="DIR[:NOTE]",
        help="model folders to list in the card's profile table",
    )
    args = parser.parse_args(argv)
    print(install(args.model_dir, compare=args.compare))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
