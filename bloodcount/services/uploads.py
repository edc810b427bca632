"""Uploaded files: sniff what they are from their first bytes, expand zip archives.

Nothing here decodes pixels (the API must stay light); a file whose header says JPEG but
whose pixels are broken becomes a per-slide error in the worker, not a refused batch.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from bloodcount.services.errors import InvalidRequest, TooLarge

# (magic prefix, kind, content type, file suffix used in object keys)
_MAGIC: tuple[tuple[bytes, str, str, str], ...] = (
    (b"\xff\xd8\xff", "image", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "image", "image/png", ".png"),
    (b"II*\x00", "image", "image/tiff", ".tif"),
    (b"MM\x00*", "image", "image/tiff", ".tif"),
    (b"BM", "image", "image/bmp", ".bmp"),
    (b"PK\x03\x04", "zip", "application/zip", ".zip"),
    (b"PK\x05\x06", "zip", "application/zip", ".zip"),  # an empty archive
)
SNIFF_BYTES = 8


@dataclass(frozen=True)
class Sniffed:
    kind: str  # "image" or "zip"
    content_type: str
    suffix: str


@dataclass(frozen=True)
class SlideFile:
    """One image to become a slide: its name as the lab gave it, bytes and type."""

    filename: str
    data: bytes
    content_type: str
    suffix: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sniff(head: bytes) -> Sniffed | None:
    """What the first bytes of a file say it is, or None for anything else."""
    for magic, kind, content_type, suffix in _MAGIC:
        if head.startswith(magic):
            return Sniffed(kind, content_type, suffix)
    return None


def _refuse_unknown(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"{name!r} is not a JPEG, PNG, TIFF, BMP image or a zip archive of them "
        "(files are recognised by their content, not their name)",
        file=name,
    )


def expand_uploads(
    uploads: Iterable[tuple[str, BinaryIO]], max_files: int, max_bytes: int
) -> list[SlideFile]:
    """Every slide in the uploads, zip archives expanded in place, in the order given.

    Raises InvalidRequest for a file that is neither an image nor a zip, and TooLarge when
    the slides outnumber ``max_files`` or their bytes (archives uncompressed) exceed
    ``max_bytes``, which also bounds a zip bomb.
    """
    slides: list[SlideFile] = []
    total = 0
    for name, stream in uploads:
        for slide in _expand_one(name, stream, max_bytes - total):
            total += len(slide.data)
            slides.append(slide)
            if len(slides) > max_files:
                raise TooLarge(
                    f"more than {max_files} slides in one batch (BLOODCOUNT_MAX_FILES_PER_BATCH); "
                    "split the upload into several batches"
                )
    if not slides:
        raise InvalidRequest("no slides: attach one or more images or zip archives as 'files'")
    return slides


def _expand_one(name: str, stream: BinaryIO, budget: int) -> Iterator[SlideFile]:
    data = stream.read(budget + 1)
    if len(data) > budget:
        raise _too_large(budget)
    found = sniff(data[:SNIFF_BYTES])
    if found is None:
        raise _refuse_unknown(name)
    if found.kind == "image":
        yield SlideFile(name, data, found.content_type, found.suffix)
        return
    yield from _expand_zip(name, data, budget)


def _too_large(budget: int) -> TooLarge:
    return TooLarge(
        f"the slides exceed {budget:,} bytes (BLOODCOUNT_MAX_UPLOAD_BYTES, archives counted "
        "uncompressed); split the upload, or use presigned uploads for large slides"
    )


def _expand_zip(name: str, data: bytes, budget: int) -> Iterator[SlideFile]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InvalidRequest(f"{name!r} looks like a zip archive but cannot be opened", file=name) from None
    with archive:
        members = [m for m in archive.infolist() if not _skipped(m)]
        # Declared sizes first, so a bomb is refused before anything is inflated.
        if sum(m.file_size for m in members) > budget:
            raise _too_large(budget)
        for member in sorted(members, key=lambda m: m.filename):
            label = f"{name}/{member.filename}"
            try:
                with archive.open(member) as handle:
                    content = handle.read(member.file_size + 1)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError) as exc:
                raise InvalidRequest(f"{label!r} cannot be extracted: {exc}", file=label) from None
            if len(content) > member.file_size:
                raise InvalidRequest(f"{label!r} is larger than its archive says", file=label)
            found = sniff(content[:SNIFF_BYTES])
            if found is None or found.kind != "image":
                raise _refuse_unknown(label)
            yield SlideFile(label, content, found.content_type, found.suffix)


def _skipped(member: zipfile.ZipInfo) -> bool:
    """Folders and the metadata that archivers add (macOS forks, dot files)."""
    path = PurePosixPath(member.filename)
    return (
        member.is_dir()
        or path.parts[:1] == ("__MACOSX",)
        or any(part.startswith(".") for part in path.parts)
    )
