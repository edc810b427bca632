"""Turn uploaded bytes into an RGB uint8 array, with limits checked before any pixel is decoded.

Accepts JPEG, PNG, TIFF and BMP; applies EXIF orientation; reduces 16-bit to 8-bit,
grey to RGB and composites alpha over white (a transparent pixel is empty glass, not
a dark cell). Anything wrong raises :class:`SlideError`, whose message is a one-line,
user-facing reason: one bad slide must never stop a batch.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

SUPPORTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "BMP": "BMP"}
_JPEG_END = b"\xff\xd9"
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10


class SlideError(ValueError):
    """A slide that cannot be analysed; ``str(error)`` says what was wrong, in one line."""


def read_header(data: bytes) -> tuple[str, int, int, str]:
    """Format, width, height and PIL mode from the header alone (no pixels are decoded)."""
    if not data:
        raise SlideError("empty file: no bytes to decode")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies below; PIL's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.format or "", int(img.width), int(img.height), img.mode
    except Image.DecompressionBombError as exc:
        raise SlideError(f"image has too many pixels ({exc})") from None
    except Exception:
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
    if fmt == "JPEG" and _JPEG_END not in data[-4096:]:
        # libjpeg fills a cut-off JPEG with grey and carries on; grey is not a smear.
        raise SlideError("truncated JPEG: the file ends before the image data does")
    return fmt, width, height, mode


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
    if pixels is None or pixels.size == 0:
        raise SlideError(f"corrupt or truncated {fmt} file: the pixel data cannot be decoded")
    if pixels.shape[0] * pixels.shape[1] > max_pixels:
        raise SlideError(f"image has more pixels than the limit of {max_pixels:,}")
    return pixels if rgb else _to_rgb8(pixels)
