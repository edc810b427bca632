"""Slides per second of ``Analyzer`` on 640x480 smears, with a stage breakdown and peak memory.

Run: ``.venv/bin/python bench/bench_analysis.py [--slides N] [--workers 2]
[--method dense|classical] [--record]``; the default measures the default pipeline (dense).
Each worker process loads the model once and analyses its share of the slides from bytes
(decode included); ``--record`` replaces this benchmark's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## bench_analysis"


def _slides(n: int) -> list[bytes]:
    data = Path(os.environ.get("BLOODCOUNT_DATA", ROOT.parent / "shared" / "data"))
    files = sorted((data / "bccd" / "JPEGImages").glob("*.jpg"))[:n]
    if not files:
        sys.exit(f"no BCCD slides under {data}")
    return [f.read_bytes() for f in files]


def _work(
    job: tuple[list[bytes], str],
) -> tuple[int, dict[str, float], float, int, dict[str, str], float]:
    from bloodcount.analysis import Analyzer

    blobs, method = job
    analyzer = Analyzer(method=method)
    analyzer.analyze_bytes(blobs[0], "warm-up")
    totals: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    for i, blob in enumerate(blobs):
        result = analyzer.analyze_bytes(blob, f"s{i}")
        for k, v in result.timings.items():
            totals[k] = totals.get(k, 0.0) + v
    elapsed = time.perf_counter() - t0
    # CPU seconds of all this process's threads: what the slides cost, however busy the machine.
    cpu = time.process_time() - c0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return len(blobs), totals, elapsed, peak_kb, analyzer.model_info, cpu


def _model_env() -> str:
    """The classifier override, if any, so the recorded command reproduces the run."""
    path = os.environ.get("BLOODCOUNT_MODEL_PATH")
    return f"BLOODCOUNT_MODEL_PATH={path} " if path else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slides", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--method", choices=["dense", "classical"], default="dense")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    blobs = _slides(args.slides)
    shares = [(blobs[i :: args.workers], args.method) for i in range(args.workers)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        outs = pool.map(_work, shares)
    wall = time.perf_counter() - t0
    n = sum(o[0] for o in outs)
    busy = max(o[2] for o in outs)
    stages = {k: sum(o[1].get(k, 0.0) for o in outs) / n for k in outs[0][1]}
    peak_mb = max(o[3] for o in outs) / 1024
    info = outs[0][4]
    cpu_ms = 1000 * sum(o[5] for o in outs) / n
    lines = [
        f"- {dt.date.today()} on {platform.node()} ({os.cpu_count()} CPUs visible), "
        f"{platform.python_version()}; method {args.method}, model {info['name']} {info['version']} "
        f"(sha256 {info['sha256'][:12]})",
        f"- command: `{_model_env()}.venv/bin/python bench/bench_analysis.py --slides {args.slides} "
        f"--workers {args.workers} --method {args.method}`",
        f"- {n} BCCD slides 640x480 JPEG, {args.workers} worker processes: "
        f"**{n / busy:.1f} slides/s** in the analysis loop ({n / wall:.1f}/s including process start and model load)",
        "- per slide (ms, mean): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()),
        f"- CPU time per slide {cpu_ms:.1f} ms (all threads), i.e. about "
        f"{args.workers * 1000 / cpu_ms:.0f} slides/s on {args.workers} otherwise idle cores; load average "
        f"{os.getloadavg()[0]:.1f} during the run",
        f"- peak resident memory per worker process: {peak_mb:.0f} MB",
    ]
    print("\n".join(lines))
    if args.record:
        results = ROOT / "bench" / "RESULTS.md"
        text = results.read_text() if results.exists() else "# Benchmark results\n"
        # The default pipeline owns the plain heading; the classical one is kept beside it.
        section = SECTION if args.method == "dense" else f"{SECTION} (classical)"
        block = f"{section}\n" + "\n".join(lines) + "\n"
        if f"{section}\n" in text:
            # A new run replaces the section's bullet lines and their indented continuations
            # (hand-written notes under the last run go with it; earlier records are kept
            # by hand below the new one).
            text = re.sub(rf"{re.escape(section)}\n(?:(?:- |  ).*\n)*", lambda _: block, text)
        else:
            text = text.rstrip("\n") + "\n\n" + block
        results.write_text(text)


if __name__ == "__main__":
    main()
