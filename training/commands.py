"""``bloodcount train`` and ``bloodcount classify``. TensorFlow is imported inside handlers only."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``train`` and ``classify`` sub-commands to the CLI."""
    train = subparsers.add_parser(
        "train",
        help="train the cell classifier (needs the 'train' extra: TensorFlow)",
        description="Train, evaluate and export the cell classifier; writes a model folder.",
    )
    train.add_argument(
        "--profile",
        default="default",
        help="seed (the study's 224 px, 3 classes) "
        "or default (96 px with a background class); default: default",
    )
    train.add_argument(
        "--data",
        nargs="+",
        type=Path,
        default=None,
        metavar="DIR",
        help="shared data folder(s) with bccd/, cbc/, txl-pbc/ "
        "(default: $BLOODCOUNT_DATA or ../shared/data)",
    )
    train.add_argument(
        "--output",
        type=Path,
        default=None,
        help="model folder to write (default: var/models/<profile>)",
    )
    train.add_argument("--epochs", type=int, default=None, help="phase-2 epochs (fine-tuning)")
    train.add_argument("--input-size", type=int, default=None, help="override the input size")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="MobileNetV2 alpha 0.35 no-top weights (.h5); default: "
        "$BLOODCOUNT_WEIGHTS or ../shared/weights/...",
    )
    train.add_argument(
        "--split",
        type=Path,
        default=None,
        help="split manifest JSON (default: training/splits/default.json)",
    )
    train.add_argument(
        "--quantize", action="store_true", help="dynamic-range quantise the .tflite weights"
    )
    train.add_argument(
        "--install", action="store_true", help="then copy the model into bloodcount/models/default"
    )
    train.set_defaults(handler=_train)

    classify = subparsers.add_parser(
        "classify",
        help="classify every labelled box of a dataset with the LiteRT model",
        description="Classify every labelled box (crops by crop_cell) and score against labels.",
    )
    classify.add_argument(
        "--labels",
        type=Path,
        required=True,
        help="VOC annotations folder, CSV file, or YOLO labels folder",
    )
    classify.add_argument("--format", choices=("voc", "csv", "yolo"), required=True)
    classify.add_argument("--images", type=Path, default=None, help="images folder")
    classify.add_argument("--classes", type=Path, default=None, help="YOLO classes.txt")
    classify.add_argument(
        "--model", type=Path, default=None, help="model folder (default: bloodcount/models/default)"
    )
    classify.add_argument("--output", type=Path, required=True, help="JSON file to write")
    classify.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first bad input instead of skipping and counting",
    )
    classify.set_defaults(handler=_classify)


def _train(args: argparse.Namespace) -> int:
    from training.install import install
    from training.train import resolve_profile, run

    profile = resolve_profile(args.profile, args.input_size, args.epochs)
    output = args.output or Path("var/models") / f"{profile.name}-{profile.input_size}"
    command = "bloodcount " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    card = run(
        profile,
        args.data,
        output,
        seed=args.seed,
        weights_path=args.weights,
        split_path=args.split,
        command=command,
        quantize=args.quantize,
    )
    cells = card["metrics"]["test"]["cells"]["background_excluded"]
    print(
        f"{output}: test accuracy {cells['accuracy']:.4f}, macro F1 {cells['macro_f1']:.4f} "
        f"(3 cell classes), {card['training']['seconds']:.0f} s"
    )
    if args.install:
        print(f"installed into {install(output)}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    from training.classify import classify_dataset
    from training.datasets import DataError

    if not args.labels.exists():
        print(f"bloodcount classify: no such labels file or folder: {args.labels}", file=sys.stderr)
        return 2
    try:
        summary = classify_dataset(
            args.labels,
            args.format,
            args.output,
            images=args.images,
            model_dir=args.model,
            classes=args.classes,
            strict=args.strict,
        )
    except DataError as exc:  # unreadable classes or CSV header; any problem with --strict
        print(f"bloodcount classify: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0
