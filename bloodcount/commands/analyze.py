"""``bloodcount analyze``: count the cells of slide images in this process, no server needed."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bloodcount.image_files import image_files_under

CSV_FIELDS = [
    "file",
    "status",
    "error",
    "width",
    "height",
    "RBC",
    "WBC",
    "Platelets",
    "review",
    "edge",
    "frame_RBC",
    "frame_WBC",
    "frame_Platelets",
    # The codes of the slide's warnings, ";"-separated (the JSON has their messages).
    "warnings",
]

_analyzer = None  # one per process, so each worker loads the model once


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="count RBC, WBC and platelets in slide images",
        description=(
            "Find and classify every cell in each slide and write the bloodcount.analysis/v1 "
            'JSON. A slide that cannot be read is reported with status "error" and the run '
            "goes on: the exit code is 0 when the run completed, even if some slides failed; "
            "2 for usage or configuration errors."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    parser.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="FILE",
        help="JSON output file, '-' for stdout (default)",
    )
    parser.add_argument(
        "--overlays", metavar="DIR", help="write each slide with class-coloured boxes here"
    )
    parser.add_argument("--csv", metavar="FILE", help="also write one CSV row per slide")
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="worker processes (default 1)"
    )
    parser.add_argument(
        "--method",
        choices=["dense", "classical"],
        default=None,
        help="dense: the learned detector (default); classical: OpenCV proposals + crop classifier",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(handler=run)


def find_images(paths: list[str]) -> list[str]:
    """Image files named directly or found (recursively, sorted) in the folders given.

    In a folder, only regular image files that are not hidden count
    (:func:`bloodcount.image_files.image_files_under`).
    """
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += [str(p) for p in image_files_under(path)]
        elif path.exists():
            found.append(raw)  # named explicitly: analyse it whatever its suffix
        else:
            raise FileNotFoundError(raw)
    return found


def _init_worker(method: str | None = None) -> None:
    global _analyzer
    from bloodcount.analysis import Analyzer

    _analyzer = Analyzer(method=method)


def _analyze_one(job: tuple[str, bool]) -> Any:
    path, overlay = job
    if _analyzer is None:
        _init_worker()
    return _analyzer.analyze_path(path, overlay=overlay)


def _results(
    paths: list[str], overlay: bool, workers: int, method: str | None = None
) -> Iterator[Any]:
    jobs = [(p, overlay) for p in paths]
    if workers <= 1:
        yield from map(_analyze_one, jobs)
        return
    import multiprocessing

    # Processes, not threads: the pipeline is CPU-bound Python + OpenCV + LiteRT.
    with multiprocessing.get_context("spawn").Pool(
        workers, initializer=_init_worker, initargs=(method,)
    ) as pool:
        yield from pool.imap(_analyze_one, jobs, chunksize=4)


def _overlay_name(path: str, used: set[str]) -> str:
    stem = Path(path).stem or "slide"
    name, n = f"{stem}.jpg", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.jpg"
    used.add(name)
    return name


def _csv_row(slide: dict[str, Any]) -> dict[str, Any]:
    row = {k: slide.get(k) for k in ("file", "status", "error", "width", "height")}
    row.update(slide["counts"])
    row["review"] = sum(c["review"] for c in slide["cells"])
    row["edge"] = sum(c["edge"] for c in slide["cells"])
    row.update({f"frame_{label}": n for label, n in slide["frame_counts"].items()})
    row["warnings"] = ";".join(w["code"] for w in slide["warnings"])
    return row


def run(args: argparse.Namespace) -> int:
    """Analyse every slide named; exit 0 when the run completed, 2 on usage errors."""
    from tqdm import tqdm

    from bloodcount.analysis import SCHEMA, open_analyzer
    from bloodcount.commands.outputs import prepare_outputs, shown_path
    from bloodcount.csv_text import to_csv

    if args.workers < 1:
        print("bloodcount analyze: --workers must be 1 or more", file=sys.stderr)
        return 2
    try:
        paths = find_images(args.paths)
    except FileNotFoundError as exc:
        print(f"bloodcount analyze: no such file or folder: {exc}", file=sys.stderr)
        return 2
    if not paths:
        print("bloodcount analyze: no images found (JPEG, PNG, TIFF, BMP)", file=sys.stderr)
        return 2
    if not prepare_outputs("analyze", args.output, args.csv):
        return 2
    analyzer = open_analyzer("analyze", args.method)
    if analyzer is None:
        return 2
    global _analyzer
    _analyzer = analyzer
    overlay_dir = Path(args.overlays) if args.overlays else None
    if overlay_dir:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    workers = min(args.workers, len(paths), os.cpu_count() or 1)
    slides, used = [], set()
    bar = tqdm(total=len(paths), unit="slide", file=sys.stderr, disable=args.no_progress)
    for result in _results(paths, overlay_dir is not None, workers, args.method):
        if overlay_dir and result.overlay:
            (overlay_dir / _overlay_name(result.file, used)).write_bytes(result.overlay)
        slide = result.to_dict()
        slide["file"] = shown_path(slide["file"])
        slides.append(slide)
        bar.update(1)
    bar.close()
    document = {"schema": SCHEMA, "model": analyzer.model_info, "slides": slides}
    text = json.dumps(document, indent=1)
    if args.output == "-":
        sys.stdout.write(text + "\n")
    else:
        Path(args.output).write_text(text + "\n")
    if args.csv:
        Path(args.csv).write_text(to_csv((_csv_row(s) for s in slides), CSV_FIELDS))
    failed = sum(s["status"] == "error" for s in slides)
    if failed:
        print(
            f"bloodcount analyze: {failed} of {len(slides)} slides could not be analysed "
            '(see their "error")',
            file=sys.stderr,
        )
    warned = sum(bool(s["warnings"]) for s in slides)
    if warned:
        print(
            f"bloodcount analyze: {warned} of {len(slides)} slides were counted with warnings "
            '(see their "warnings"): check them before trusting their counts',
            file=sys.stderr,
        )
    return 0
