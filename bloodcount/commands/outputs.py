"""Output files of the long-running commands, made ready before any slide is analysed."""

from __future__ import annotations

import os
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
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                raise IsADirectoryError(21, "it is a folder")
            if not os.access(path.parent, os.W_OK):
                raise PermissionError(13, f"{path.parent} is not writable")
        except OSError as exc:
            print(
                f"bloodcount {command}: cannot write {path}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return False
    return True


def shown_path(path: str | Path) -> str:
    """``path`` as text every JSON and CSV reader accepts.

    A file name that is not UTF-8 (from an old Windows or Latin-1 share) reaches Python as
    lone surrogates, which strict JSON parsers reject and a UTF-8 file cannot hold at all;
    its odd bytes are written as ``\\xNN`` instead, so the lab can still tell the file.
    """
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")
