"""Output files of the long-running commands, made ready before any slide is analysed."""

from __future__ import annotations

import sys
from pathlib import Path


def prepare_outputs(command: str, *paths: str | Path | None) -> bool:
    """Create the folders the output files go in; False (with a message) if one cannot be.

    ``analyze`` and ``evaluate`` can run for an hour; finding out at the end that the
    output's folder does not exist would throw that hour away. ``-`` (stdout) and None
    are skipped.
    """
    for path in paths:
        if path is None or str(path) == "-":
            continue
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(
                f"bloodcount {command}: cannot write {path}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return False
    return True
