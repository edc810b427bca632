"""Average the weights of detector runs fine-tuned from one starting point (a "model soup").

``python -m training.detector.soup --run A --run B [--run C ...] --out DIR`` writes
``DIR/model.weights.h5`` (every weight the mean of the runs'), ``DIR/model.tflite`` and a
``DIR/train_log.json`` naming every run. Unlike an ensemble (``export --ensemble-with``) the
result is one network of the same size: it costs nothing at inference.

Averaging is meaningful only for runs that left one shared starting point and stayed near
it (Wortsman et al. 2022, "Model soups"): two networks trained apart can hold the same
features in different channels, and their mean is neither. So every run must name the same
``--init``. Runs fine-tuned with ``--freeze-bn`` keep every BatchNorm as it was, so the mean
changes only the convolutions; other runs' BatchNorm statistics are averaged too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def soup_log(runs: list[Path]) -> dict:
    """A train_log.json for a weight average: the first run's, plus every run's own."""
    logs = [json.loads((run / "train_log.json").read_text()) for run in runs]
    inits = {log.get("init") for log in logs}
    if None in inits or len(inits) != 1:
        named = ", ".join(f"{run}: {log.get('init')}" for run, log in zip(runs, logs, strict=True))
        raise ValueError(
            "a weight average needs runs fine-tuned from one --init (networks trained apart "
            f"do not line up channel for channel); got {named}"
        )
    # The first run's fields stand for the recipe (all share it but the seed); its own
    # loss log does not stand for the mean, so none is kept.
    merged = {k: v for k, v in logs[0].items() if k != "log"}
    merged["seconds"] = round(sum(log["seconds"] for log in logs), 1)
    merged["soup_of"] = [
        {
            "run": str(run),
            **{k: v for k, v in log.items() if k != "log"},
            "final_losses": log["log"][-1] if log.get("log") else None,
        }
        for run, log in zip(runs, logs, strict=True)
    ]
    return merged


def soup(runs: list[Path]):
    """One detector whose every weight is the mean of the runs' (BatchNorm statistics included)."""
    import numpy as np

    from training.detector.model import build_detector

    model, _ = build_detector(None)
    weights = []
    for run in runs:
        model.load_weights(run / "model.weights.h5")
        weights.append(model.get_weights())
    model.set_weights([np.mean(ws, axis=0) for ws in zip(*weights, strict=True)])
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--run", type=Path, action="append", required=True, help="a run's folder (two or more)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    if len(args.run) < 2:
        parser.error("a weight average needs at least two --run folders")
    try:
        log = soup_log(args.run)
    except ValueError as e:
        parser.error(str(e))
    from training.detector.export import export_tflite

    model = soup(args.run)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_weights(args.out / "model.weights.h5")
    (args.out / "train_log.json").write_text(json.dumps(log, indent=1))
    print(export_tflite(model, args.out / "model.tflite"))


if __name__ == "__main__":
    main()
