"""Which files in a folder are slides: one rule for `bloodcount analyze` and the training readers."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def image_files_under(folder: Path) -> list[Path]:
    """Image files in ``folder`` and its sub-folders (Ultralytics: images/train, images/val), sorted.

    Hidden files and folders are passed over: macOS leaves a ``._name.jpg`` beside every
    image copied from its disks, which is metadata, not a slide (uploaded zips skip them
    too). So is anything but a regular file: opening a named pipe called ``x.jpg`` would
    wait forever for a writer.
    """
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )
