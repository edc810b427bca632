"""Decoding with limits: every kind of bad input is a one-line SlideError, never a crash."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from bloodcount.vision.decode import SlideError, decode_image, extra_pages

LIMIT = 10_000_000


def _encode(pixels: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, pixels)
    assert ok
    return buf.tobytes()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG claiming a huge size: a decompression bomb's header, without its payload."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif", ".bmp"])
def test_supported_formats_decode_to_rgb(ext):
    bgr = np.zeros((30, 40, 3), np.uint8)
    bgr[:, :, 2] = 200  # red in BGR
    out = decode_image(_encode(bgr, ext), LIMIT)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert out[15, 20, 0] > 150 and out[15, 20, 2] < 50  # red first: RGB order


def test_sixteen_bit_png_is_scaled_to_eight_bit():
    pixels = np.full((10, 12, 3), 40000, np.uint16)
    out = decode_image(_encode(pixels, ".png"), LIMIT)
    assert out.dtype == np.uint8 and int(out[0, 0, 0]) == 40000 >> 8


def test_grayscale_becomes_three_channels():
    out = decode_image(_encode(np.full((8, 9), 77, np.uint8), ".png"), LIMIT)
    assert out.shape == (8, 9, 3) and (out == 77).all()


def test_alpha_is_composited_over_white():
    bgra = np.zeros((6, 6, 4), np.uint8)  # black but fully transparent
    bgra[:3, :, 3] = 255  # top half opaque black
    out = decode_image(_encode(bgra, ".png"), LIMIT)
    assert (out[:3] == 0).all() and (out[3:] == 255).all()


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    assert decode_image(buf.getvalue(), LIMIT).shape[:2] == (40, 20)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable image"),
        (_png_header_only(200_000, 200_000), "too many pixels"),
        (_png_header_only(5_000, 5_000), "over the limit"),
    ],
)
def test_bad_input_is_a_one_line_slide_error(data, expected):
    with pytest.raises(SlideError) as info:
        decode_image(data, LIMIT)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_truncated_jpeg_and_png_are_errors():
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    for ext in (".jpg", ".png"):
        data = _encode(pixels, ext)
        with pytest.raises(SlideError, match="truncated"):
            decode_image(data[: len(data) // 2], LIMIT)


def test_unsupported_format_is_named():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "GIF")
    with pytest.raises(SlideError, match="unsupported image format GIF"):
        decode_image(buf.getvalue(), LIMIT)


def test_pixel_limit_is_checked_before_decoding():
    data = _encode(np.zeros((100, 100, 3), np.uint8), ".png")
    with pytest.raises(SlideError, match="10,000 pixels, over the limit of 9,999"):
        decode_image(data, 9_999)
    assert decode_image(data, 10_000).shape == (100, 100, 3)


def _jpeg(pixels: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **options)
    return buf.getvalue()


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_with_data_after_the_image_decodes(progressive):
    # Phones append a motion-photo video, makers a trailer: the image itself is complete.
    pixels = np.random.default_rng(1).integers(0, 255, (64, 80, 3), np.uint8)
    plain = _jpeg(pixels, progressive=progressive)
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(0, 250)) * 40  # no end marker in it
    for trailer in (b"\x00" * 20_000, video):
        assert (decode_image(plain + trailer, LIMIT) == decode_image(plain, LIMIT)).all()


def test_truncated_jpeg_with_data_after_it_is_still_truncated():
    pixels = np.random.default_rng(2).integers(0, 255, (64, 64, 3), np.uint8)
    data = _jpeg(pixels)
    with pytest.raises(SlideError, match="truncated JPEG"):
        decode_image(data[: len(data) // 2] + b"\x00" * 20_000, LIMIT)


def test_camera_jpeg_with_a_preview_picture_decodes_its_main_picture():
    # MPO: what PIL calls a JPEG whose APP2 segment lists a second, appended picture.
    pixels = np.random.default_rng(3).integers(0, 255, (48, 64, 3), np.uint8)
    main = Image.fromarray(pixels)
    buf = io.BytesIO()
    main.save(buf, "MPO", save_all=True, append_images=[main.resize((16, 12))], quality=90)
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        assert img.format == "MPO"
        expected = np.asarray(img.convert("RGB"))  # PIL's decode of the first picture
    out = decode_image(buf.getvalue(), LIMIT)
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 1.0


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "RGBA"), ("TIFF", "RGB"), ("TIFF", "RGBA")],
)
def test_every_exif_orientation_is_applied_once_as_pil_does(orientation, fmt, mode):
    # Without alpha OpenCV decodes and orients by itself (the fast path); with alpha the
    # pixels are decoded unchanged, and a PNG's orientation is applied by us while OpenCV's
    # TIFF reader applies its own: each must end up oriented exactly once.
    from PIL import ImageOps

    pixels = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), np.uint8)
    img = Image.fromarray(pixels).convert(mode)
    if mode == "RGBA":
        img.putalpha(255)  # opaque: compositing over white leaves the colours as they are
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    with Image.open(io.BytesIO(buf.getvalue())) as saved:
        assert saved.getexif()[0x0112] == orientation
        expected = np.asarray(ImageOps.exif_transpose(saved).convert("RGB")).astype(int)
    out = decode_image(buf.getvalue(), LIMIT)
    assert out.shape == expected.shape
    # Lossless formats must match exactly; JPEG within its two decoders' rounding.
    assert np.abs(out.astype(int) - expected).max() <= (12 if fmt == "JPEG" else 0)


class _SoftTimeLimit(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded: an Exception raised wherever the code is."""


@pytest.mark.parametrize(
    "read",
    [
        lambda data: decode_image(data, 10**7),
        extra_pages,
    ],
    ids=["decode_image", "extra_pages"],
)
def test_a_time_limit_inside_pil_is_not_reported_as_a_bad_image(monkeypatch, read):
    """A worker's soft time limit must reach the worker, not turn into "not an image"."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "TIFF")

    def interrupted(*args, **kwargs):
        raise _SoftTimeLimit("time is up")

    monkeypatch.setattr(Image, "open", interrupted)
    with pytest.raises(_SoftTimeLimit):
        read(buf.getvalue())
