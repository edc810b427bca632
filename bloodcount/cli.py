"""The ``bloodcount`` command: a thin dispatcher over per-command modules.

Each command lives in its own module exposing ``register(subparsers)``, which adds a
sub-parser whose ``handler`` takes the parsed arguments and returns an exit code. Heavy
imports (TensorFlow, OpenCV, Flask) happen inside handlers, so ``bloodcount --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from bloodcount.config import SettingsError

# Order is the order shown by --help.
COMMAND_MODULES = [
    "bloodcount.commands.db",
    "bloodcount.commands.labs",
    "bloodcount.commands.analyze",
    "bloodcount.commands.evaluate",
    "training.commands",
    "bloodcount.commands.service",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bloodcount",
        description="Count red cells, white cells and platelets in blood smear images.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A command whose module is not there yet must not break the others.
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Alembic narrates every plugin it loads at INFO; keep the migrations' own lines only.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except SettingsError as exc:
        print(f"bloodcount: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
