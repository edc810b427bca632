"""Turn uploaded bytes into an RGB uint8 array, with limits checked before any pixel is decoded.

Accepts JPEG (also with data after the image, and MPO: the camera JPEG that carries a
preview image after the main one), PNG, TIFF and BMP; applies EXIF orientation on every
path; reduces 16-bit to 8-bit, grey to RGB and composites alpha over white (a transparent
pixel is empty glass, not a dark cell). Anything wrong raises :class:`SlideError`, whose message is a one-line,
user-facing reason: one bad slide must never stop a batch.
"""

from __future__ import annotations

import io
import struct
import warnings

import cv2
import numpy as np
from PIL import Image

from bloodcount.vision import TIFF_SIGNATURES
from bloodcount.vision.truncation import FORMAT_ALIASES, cut_short

SUPPORTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "BMP": "BMP"}
_ORIENTATION = 0x0112
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10


class SlideError(ValueError):
    """A slide that cannot be analysed; ``str(error)`` says what was wrong, in one line."""


# What PIL's readers raise on a malformed file: the built-in error families, each a fault of
# the bytes. Not ``Exception``: a worker's soft time limit (Celery raises its own exception
# class wherever the code happens to be) must reach the worker, not become "not an image".
_MALFORMED = (
    OSError,  # PIL.UnidentifiedImageError included
    ValueError,
    SyntaxError,  # "not a TIFF file" and other plugin checks
    EOFError,
    struct.error,
    LookupError,
    TypeError,
    ArithmeticError,
    AttributeError,
    RecursionError,
    Image.DecompressionBombError,  # read_header names it; elsewhere it is one more bad file
)


def read_header(data: bytes) -> tuple[str, int, int, str]:
    """Format, width, height and PIL mode from the header alone (no pixels are decoded)."""
    if not data:
        raise SlideError("empty file: no bytes to decode")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies below; PIL's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = FORMAT_ALIASES.get(img.format or "", img.format or "")
                return fmt, int(img.width), int(img.height), img.mode
    except Image.DecompressionBombError as exc:
        raise SlideError(f"image has too many pixels ({exc})") from None
    except _MALFORMED:
        raise SlideError("not a readable image: expected JPEG, PNG, TIFF or BMP") from None


def check_header(data: bytes, max_pixels: int) -> tuple[str, int, int, str]:
    """Validate format and size from the header; raise SlideError naming the problem."""
    fmt, width, height, mode = read_header(data)
    if fmt not in SUPPORTED_FORMATS:
        raise SlideError(f"unsupported image format {fmt or 'unknown'}: use JPEG, PNG, TIFF or BMP")
    if width <= 0 or height <= 0:
        raise SlideError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise SlideError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (BLOODCOUNT_MAX_IMAGE_PIXELS)"
        )
    if cut_short(fmt, data):
        raise SlideError(f"truncated {fmt}: the file ends before the image data does")
    return fmt, width, height, mode


_REDUCED_RESOLUTION = 1  # NewSubfileType (tag 254) bit 0: a smaller copy of another page


def extra_pages(data: bytes) -> int:
    """Full-resolution images in a TIFF beyond the first, the one that is decoded and counted.

    Reduced-resolution pages (a pyramid's levels, a thumbnail) are copies of the first, not
    more of the slide, so they are not counted. Reads page headers only; 0 for other formats
    or when the pages cannot be read (the first one decodes or fails on its own).
    """
    if data[:4] not in TIFF_SIGNATURES:
        return 0
    try:
        with Image.open(io.BytesIO(data)) as img:
            extra = 0
            for index in range(1, getattr(img, "n_frames", 1)):
                img.seek(index)
                if not int(img.tag_v2.get(254, 0)) & _REDUCED_RESOLUTION:
                    extra += 1
            return extra
    except _MALFORMED:
        return 0


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8; 1 = as stored) of a PNG, from its eXIf chunk."""
    if b"eXIf" not in data:
        return 1  # without this check PIL would decode every pixel looking for one
    try:
        with Image.open(io.BytesIO(data)) as img:
            value = int(img.getexif().get(_ORIENTATION, 1))
    except _MALFORMED:
        return 1  # unreadable metadata: show the pixels as stored
    return value if 1 <= value <= 8 else 1


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to decoded pixels, as PIL's ``ImageOps.exif_transpose`` does."""
    if orientation in (5, 6, 7, 8):
        pixels = cv2.rotate(
            pixels,
            cv2.ROTATE_90_CLOCKWISE if orientation in (5, 6) else cv2.ROTATE_90_COUNTERCLOCKWISE,
        )
        return cv2.flip(pixels, 1) if orientation in (5, 7) else pixels
    if orientation == 2:
        return cv2.flip(pixels, 1)
    if orientation == 3:
        return cv2.rotate(pixels, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(pixels, 0)
    return pixels


def _to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """BGR/BGRA/grey of any depth, as decoded by OpenCV, to RGB uint8."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        scaled = cv2.normalize(pixels.astype(np.float64), None, 0, 255, cv2.NORM_MINMAX)
        pixels = scaled.astype(np.uint8)
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    if pixels.shape[2] == 4:
        alpha = pixels[:, :, 3:4].astype(np.float32) / 255.0
        colour = pixels[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return cv2.cvtColor(colour.round().astype(np.uint8), cv2.COLOR_BGR2RGB)
    if pixels.shape[2] == 1:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(pixels[:, :, :3], cv2.COLOR_BGR2RGB)


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode ``data`` to an H x W x 3 RGB uint8 array, EXIF orientation applied."""
    fmt, width, height, mode = check_header(data, max_pixels)
    buffer = np.frombuffer(data, dtype=np.uint8)
    has_alpha = "A" in mode or (mode == "P" and fmt == "PNG" and b"tRNS" in data[:4096])
    rgb = False
    if fmt == "JPEG" or (mode in {"RGB", "L"} and not has_alpha):
        # The fast path: OpenCV decodes straight to 8-bit colour and applies EXIF rotation,
        # in RGB order itself where it can (no conversion pass; the same pixels).
        rgb = _IMREAD_RGB is not None
        pixels = cv2.imdecode(buffer, _IMREAD_RGB if rgb else cv2.IMREAD_COLOR)
    else:
        # Keep alpha and depth so they are handled deliberately, not silently dropped.
        pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        if pixels is not None and not has_alpha and pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[:, :, :3]
        if fmt == "PNG" and pixels is not None and pixels.size:
            # This mode ignores a PNG's EXIF orientation (OpenCV's TIFF reader applies its
            # own in every mode), so it is applied here, as the fast path does.
            pixels = _orient(pixels, _exif_orientation(data))
    if pixels is None or pixels.size == 0:
        raise SlideError(f"corrupt or truncated {fmt} file: the pixel data cannot be decoded")
    if pixels.shape[0] * pixels.shape[1] > max_pixels:
        raise SlideError(f"image has more pixels than the limit of {max_pixels:,}")
    return pixels if rgb else _to_rgb8(pixels)
