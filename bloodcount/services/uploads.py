"""Uploaded files: sniff what they are from their first bytes, expand zip archives.

Nothing here decodes pixels (the API must stay light). What the header alone proves wrong
refuses the request, naming the file: not an image, cut short (no end marker), over the
pixel limit, a hostile name. A file whose header says JPEG but whose pixels are broken
becomes a per-slide error in the worker, not a refused batch.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from bloodcount.services.errors import InvalidRequest, TooLarge
from bloodcount.vision import TIFF_SIGNATURES

# (magic prefix, kind, content type, file suffix used in object keys)
_MAGIC: tuple[tuple[bytes, str, str, str], ...] = (
    (b"\xff\xd8\xff", "image", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "image", "image/png", ".png"),
    *((signature, "image", "image/tiff", ".tif") for signature in TIFF_SIGNATURES),
    (b"BM", "image", "image/bmp", ".bmp"),
    (b"PK\x03\x04", "zip", "application/zip", ".zip"),
    (b"PK\x05\x06", "zip", "application/zip", ".zip"),  # an empty archive
)
SNIFF_BYTES = 8
MAX_NAME_LENGTH = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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


def check_name(name: str, what: str = "file name") -> str:
    """Refuse a name that could be mistaken for a path or smuggle characters into logs,
    CSV reports and headers: control characters, '..' segments, absolute paths, > 255."""
    shown = name.encode("unicode_escape").decode()[:120]
    if _CONTROL.search(name):
        raise InvalidRequest(
            f"{what} {shown!r} holds a control character (such as NUL or a "
            "line break); rename the file",
            file=shown,
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(
            f"{what} {shown!r}... is {len(name)} characters long; at most "
            f"{MAX_NAME_LENGTH} are allowed",
            file=shown,
        )
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise InvalidRequest(
            f"{what} {shown!r} is an absolute path; send plain file names", file=shown
        )
    if ".." in parts:
        raise InvalidRequest(
            f"{what} {shown!r} has a '..' segment, which could point outside "
            "its folder; send plain file names",
            file=shown,
        )
    return name


def check_image_header(label: str, data: bytes, max_pixels: int) -> None:
    """Refuse an image that its header alone shows to be unusable: over the pixel limit (a
    decompression bomb is kilobytes on the wire) or cut short. Decodes no pixels; a header
    PIL cannot read is left to the worker, which fails that slide with the reason."""
    from PIL import Image

    from bloodcount.vision.truncation import FORMAT_ALIASES, cut_short

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = FORMAT_ALIASES.get(img.format or "", img.format or "")
                width, height = img.width, img.height
    except Image.DecompressionBombError:
        raise InvalidRequest(
            f"{label!r} has far too many pixels for an image "
            f"(BLOODCOUNT_MAX_IMAGE_PIXELS is {max_pixels:,})",
            file=label,
        ) from None
    except Exception:
        return
    if width * height > max_pixels:
        raise InvalidRequest(
            f"{label!r} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (BLOODCOUNT_MAX_IMAGE_PIXELS)",
            file=label,
        )
    if cut_short(fmt, data):
        raise InvalidRequest(
            f"{label!r} is a truncated {fmt}: the file ends before the image "
            "data does; upload it again",
            file=label,
        )


def expand_uploads(
    uploads: Iterable[tuple[str, BinaryIO]],
    max_files: int,
    max_bytes: int,
    max_pixels: int | None = None,
) -> list[SlideFile]:
    """Every slide in the uploads, zip archives expanded in place, in the order given.

    Raises InvalidRequest for a file that is neither an image nor a zip, and TooLarge when
    the slides outnumber ``max_files`` or their bytes (archives uncompressed) exceed
    ``max_bytes``, which also bounds a zip bomb. With ``max_pixels``, each image's header
    is checked too (:func:`check_image_header`).
    """
    slides: list[SlideFile] = []
    total = 0
    for name, stream in uploads:
        check_name(name)
        for slide in _expand_one(name, stream, max_bytes - total):
            if max_pixels is not None:
                check_image_header(slide.filename, slide.data, max_pixels)
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
        raise InvalidRequest(
            f"{name!r} looks like a zip archive but cannot be opened", file=name
        ) from None
    with archive:
        for member in archive.infolist():  # before skipping: '..' would pass as a dot file
            check_name(member.filename, f"member of {name!r}")
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
            if found is not None and found.kind == "zip":
                raise InvalidRequest(
                    f"{label!r} is a zip inside a zip; nested archives are not "
                    "expanded: put the images in one archive",
                    file=label,
                )
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
