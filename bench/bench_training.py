"""Time ``bloodcount train --profile default`` and record it in bench/RESULTS.md.

Usage: ``.venv/bin/python bench/bench_training.py [--output DIR] [--from-card DIR]``.
``--from-card`` records an already finished run (its card holds the measured time) instead of
training again. Only the "Training" section of RESULTS.md is replaced; others are kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Training (bench/bench_training.py)"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def section(card: dict, wall: float | None, command: str, load_before: str) -> str:
    """The Markdown section for one measured run."""
    cells = card["metrics"]["test"]["cells"]
    ex, inc = cells["background_excluded"], cells.get("background_included", {})
    rows = [
        HEADING,
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {_cpu()}, {os.cpu_count()} CPU cores visible; "
        + (
            f"load average before {load_before}, after {_load()}"
            if wall is not None
            else "recorded from the run's model card: "
            + (card["training"].get("note") or card["training"].get("load_average_at_end", ""))
        )
        + " (other engineers share these cores, so times may be inflated)",
        f"- command: `{command}`",
        f"- model: profile {card['profile']}, input {card['input_size']} px, alpha {card['alpha']}, "
        f"classes {', '.join(card['classes'])}",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| training time (data prep + both phases), s | {card['training']['seconds']:.0f} |",
    ]
    if wall is not None:
        rows.append(
            f"| wall time of the whole command (incl. export, evaluation), s | {wall:.0f} |"
        )
    rows += [
        f"| test accuracy, 3 cells, background excluded | {ex['accuracy']:.4f} |",
        f"| test macro F1, 3 cells, background excluded | {ex['macro_f1']:.4f} |",
    ]
    if inc:
        rows += [
            f"| test accuracy, 3 cells, background included | {inc['accuracy']:.4f} |",
            f"| test accuracy, all 4 classes | {card['metrics']['test']['all_classes']['accuracy']:.4f} |",
        ]
    rows.append(
        f"| target: train <= 1200 s and accuracy >= 0.997, macro F1 >= 0.995 | "
        f"{'met' if card['training']['seconds'] <= 1200 and ex['accuracy'] >= 0.997 and ex['macro_f1'] >= 0.995 else 'NOT met'} |"
    )
    return "\n".join(rows) + "\n"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Replace our section in RESULTS.md (or append it), leaving the others alone."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(HEADING) + r".*?(?=^## |\Z)", re.S | re.M)
    new = (
        pattern.sub(lambda _: text + "\n", old)
        if pattern.search(old)
        else old.rstrip() + "\n\n" + text
    )
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "var/bench/default")
    parser.add_argument("--from-card", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    load_before = _load()
    wall = None
    if args.from_card:
        card = json.loads((args.from_card / "card.json").read_text())
        command = card["command"]
    else:
        cmd = [
            sys.executable,
            "-m",
            "bloodcount.cli",
            "train",
            "--profile",
            "default",
            "--output",
            str(args.output),
            "--seed",
            str(args.seed),
        ]
        command = " ".join(cmd[1:])
        start = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT)
        wall = time.time() - start
        card = json.loads((args.output / "card.json").read_text())
    text = section(card, wall, command, load_before)
    print(text)
    write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
