"""Hostile and broken uploads, built in memory: images that lie, archives that bite."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def huge_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A real, valid 1-bit PNG of ``width`` x ``height`` pixels that compresses to kilobytes."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND", b"")
    )


def raw_zip(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip holding exactly these member names (no normalisation: '../x' stays '../x')."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def zip_bomb(uncompressed: int) -> bytes:
    """One member of ``uncompressed`` zero bytes behind a JPEG header (kilobytes on the wire)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("bomb.jpg")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as out:
            out.write(b"\xff\xd8\xff\xe0")
            chunk = b"\x00" * (1 << 20)
            for _ in range(uncompressed >> 20):
                out.write(chunk)
    return buffer.getvalue()


def lying_zip(declared: int, actual: bytes) -> bytes:
    """A zip whose central directory claims the member is ``declared`` bytes long."""
    data = bytearray(raw_zip([("liar.jpg", actual)], zipfile.ZIP_STORED))
    # Patch the uncompressed size in the local header (offset 22) and central record (24).
    struct.pack_into("<I", data, 22, declared)
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared)
    return bytes(data)


def tiny_png() -> bytes:
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + png_chunk(b"IEND", b"")
    )
