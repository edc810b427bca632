"""Is an image file cut short? Judged from its bytes alone, without decoding a pixel.

The upload check (the API refuses a cut-off file at once) and the decoder (the worker fails
the slide) both ask this, so they agree on what "truncated" means. No OpenCV here: the API
imports it.
"""

from __future__ import annotations

# What PIL calls a JPEG whose APP2 segment lists more pictures (MPF: many cameras and phones
# append a preview). Its first picture is a plain JPEG, the one OpenCV decodes.
FORMAT_ALIASES = {"MPO": "JPEG"}

_TAIL = 4096
_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND"


def cut_short(fmt: str, data: bytes) -> bool:
    """True when a JPEG or PNG file ends before its image does (other formats: False).

    The quick test, an end marker in the file's last 4 KB, settles nearly every file. It
    fails for a complete image with something after it (a phone's motion-photo video, a
    maker's trailer), so only then are the file's segments walked to the image's end.
    Libraries fill a cut-off image with grey and carry on; grey is not a smear.
    """
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt == "JPEG":
        return _JPEG_END not in data[-_TAIL:] and not _jpeg_reaches_end(data)
    if fmt == "PNG":
        return _PNG_END not in data[-_TAIL:] and not _png_reaches_end(data)
    return False


def _jpeg_reaches_end(data: bytes) -> bool:
    """Whether the first image of a JPEG file reaches its end-of-image marker.

    Each header segment states its length; the compressed data after a start-of-scan runs
    to the next marker that is neither a restart marker nor a stuffed 0xFF (an 0xFF inside
    compressed data is always followed by 0x00). Progressive files have several scans.
    """
    n, pos = len(data), 2  # past the start-of-image marker
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return False  # not at a marker: the file is damaged
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
        elif marker == 0xD9:  # end of image
            return True
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        else:
            if pos + 3 >= n:
                return False
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
            if marker == 0xDA:  # start of scan: skip its compressed data
                while True:
                    pos = data.find(b"\xff", pos)
                    if pos < 0 or pos + 1 >= n:
                        return False
                    follower = data[pos + 1]
                    if follower == 0x00 or 0xD0 <= follower <= 0xD7:
                        pos += 2
                    elif follower == 0xFF:
                        pos += 1
                    else:
                        break
    return False


def _png_reaches_end(data: bytes) -> bool:
    """Whether a PNG's chunks (length, type, body, CRC) run whole to its IEND chunk."""
    n, pos = len(data), 8  # past the signature
    while pos + 8 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == _PNG_END:
            return True
        pos += 12 + length
    return False
