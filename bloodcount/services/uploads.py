"""Uploaded files: sniff what they are from their first bytes, expand zip archives.

Nothing here decodes pixels (the API must stay light). What the header alone proves wrong
refuses the request, naming the file: not an image, cut short (no end marker), over the
pixel limit, a hostile name. A file whose header says JPEG but whose pixels are broken
becomes a per-slide error in the worker, not a refused batch.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import re
import warnings
import zipfile
import zlib
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
# A slide's name as stored (``slides.filename``, String(500)): a zip's name, '/', and its
# member's path, each up to MAX_NAME_LENGTH, can be longer.
MAX_SLIDE_NAME = 500
# C0 and C1 controls and DEL; the line and paragraph separators (line breaks to Python's
# splitlines and to JavaScript); the bidirectional overrides and isolates, which make a
# name display as another ('slide\u202egpj.exe' shows as 'slideexe.jpg'); lone surrogates
# (only a JSON '\ud800' escape can send one), which no database can store as UTF-8 text:
# a name holding one used to reach the INSERT and fail there as a 500.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# Entries one archive may list, per slide a batch may hold: folders, macOS forks and other
# metadata come on top of the images, but not tenfold. Listing the entries costs memory
# in proportion (Python keeps an object per entry, ~1 kB): before this bound, a 27 MB zip
# of 300,000 empty folders took 4 s and 400 MB of the API process, and one at the upload
# limit would have taken gigabytes, though it holds no slide at all.
ENTRIES_PER_SLIDE = 10
# Errors that reading a broken member can raise besides BadZipFile: corrupt deflate, LZMA
# or bzip2 data, data cut short, an offset out of the file. They used to escape as a 500.
_MEMBER_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    OSError,
)


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


def _refuse_unknown(name: str, data: bytes) -> InvalidRequest:
    if not data:  # "not an image" would send the lab looking at the wrong file's format
        return InvalidRequest(f"{name!r} is empty (0 bytes): send the image again", file=name)
    return InvalidRequest(
        f"{name!r} is not a JPEG, PNG, TIFF, BMP image or a zip archive of them "
        "(files are recognised by their content, not their name)",
        file=name,
    )


def check_characters(text: str, what: str, **extra: object) -> str:
    """Refuse text holding a control character, a bidi override or a lone surrogate."""
    if _CONTROL.search(text):
        shown = text.encode("unicode_escape", "backslashreplace").decode()[:120]
        raise InvalidRequest(
            f"{what} {shown!r} holds a control character (such as NUL, a line break or a "
            "right-to-left override) or an invalid one (a lone surrogate); change it",
            **extra,
        )
    return text


def check_name(name: str, what: str = "file name") -> str:
    """Refuse a name that could be mistaken for a path or smuggle characters into logs,
    CSV reports and headers: control characters, '..' segments, absolute paths, > 255."""
    shown = name.encode("unicode_escape", "backslashreplace").decode()[:120]
    check_characters(name, what, file=shown)
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
        for slide in _expand_one(name, stream, max_bytes - total, max_files):
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


def _expand_one(name: str, stream: BinaryIO, budget: int, max_files: int) -> Iterator[SlideFile]:
    data = stream.read(budget + 1)
    if len(data) > budget:
        raise _too_large(budget)
    found = sniff(data[:SNIFF_BYTES])
    if found is None:
        raise _refuse_unknown(name, data)
    if found.kind == "image":
        yield SlideFile(name, data, found.content_type, found.suffix)
        return
    yield from _expand_zip(name, data, budget, max_files)


def _too_large(budget: int) -> TooLarge:
    return TooLarge(
        f"the slides exceed {budget:,} bytes (BLOODCOUNT_MAX_UPLOAD_BYTES, archives counted "
        "uncompressed); split the upload, or use presigned uploads for large slides"
    )


def _expand_zip(name: str, data: bytes, budget: int, max_files: int) -> Iterator[SlideFile]:
    # Every central-directory record starts with this signature, and zipfile lists a record
    # only where it finds one, so counting them bounds the entries before they are listed
    # (the entry count in the end record may lie). Counting 512 MB takes a fraction of a
    # second; a chance match inside member data only makes the count larger.
    max_entries = ENTRIES_PER_SLIDE * max_files + 100
    if data.count(b"PK\x01\x02") > max_entries:
        raise TooLarge(
            f"{name!r} lists more than {max_entries:,} entries (files and folders); a batch "
            f"holds at most {max_files:,} slides (BLOODCOUNT_MAX_FILES_PER_BATCH): split it",
            file=name,
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    # UnicodeDecodeError (a ValueError): a name flagged UTF-8 that is not; the others from
    # a central directory pointing outside the file. Both used to escape as a 500.
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise InvalidRequest(
            f"{name!r} looks like a zip archive but cannot be opened ({exc})", file=name
        ) from None
    with archive:
        for member in archive.infolist():  # before skipping: '..' would pass as a dot file
            member.filename = _member_name(member)
            check_name(member.filename, f"member of {name!r}")
        members = [m for m in archive.infolist() if not _skipped(m)]
        # Declared sizes first, so a bomb is refused before anything is inflated.
        if sum(m.file_size for m in members) > budget:
            raise _too_large(budget)
        for member in sorted(members, key=lambda m: m.filename):
            label = f"{name}/{member.filename}"
            if len(label) > MAX_SLIDE_NAME:  # it used to be cut short without a word
                raise InvalidRequest(
                    f"the slide {label[:80]!r}... is named {len(label)} characters long with "
                    f"its archive's name; at most {MAX_SLIDE_NAME}: shorten the zip's name "
                    "or the folders inside it",
                    file=label[:MAX_SLIDE_NAME],
                )
            try:
                with archive.open(member) as handle:
                    content = handle.read(member.file_size + 1)
            except _MEMBER_ERRORS as exc:
                reason = str(exc) or type(exc).__name__
                raise InvalidRequest(
                    f"{label!r} cannot be extracted ({reason}): the archive is damaged; "
                    "make it again",
                    file=label,
                ) from None
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
                raise _refuse_unknown(label, content)
            yield SlideFile(label, content, found.content_type, found.suffix)


def _member_name(member: zipfile.ZipInfo) -> str:
    """The member's name as its maker wrote it.

    Without the UTF-8 flag (bit 11) zipfile decodes a name as cp437, yet Info-ZIP, macOS
    and many other archivers write UTF-8 without setting the flag: a member written as
    'Ábaco-血液.jpg' became the slide '├übaco-ΦíÇµ╢▓.jpg'. A name whose bytes are valid
    UTF-8 (and not plain ASCII) is read as UTF-8: real cp437 names (Windows' own zips) are
    almost never valid UTF-8, and stay as zipfile read them. Only the name we show changes;
    ``orig_filename``, which zipfile checks against the local header, is left alone.
    """
    name = member.filename
    if member.flag_bits & 0x800 or name.isascii():
        return name
    try:
        return name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name


def _skipped(member: zipfile.ZipInfo) -> bool:
    """Folders and the metadata that archivers add (macOS forks, dot files)."""
    path = PurePosixPath(member.filename)
    return (
        member.is_dir()
        or path.parts[:1] == ("__MACOSX",)
        or any(part.startswith(".") for part in path.parts)
    )
