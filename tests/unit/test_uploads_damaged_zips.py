"""Zip archives that used to escape expand_uploads as a 500, lose their names or cost the
API process far more than their size (found by probing the upload path)."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from bloodcount.services import InvalidRequest, TooLarge, expand_uploads
from tests.servicekit import smear_bytes
from tests.support.badinput import raw_zip

GOOD = smear_bytes(7, width=160, height=120)
UTF8_FLAG = 0x800


def _expand(files: dict[str, bytes], max_files: int = 10):
    return expand_uploads([(n, io.BytesIO(d)) for n, d in files.items()], max_files, 10_000_000)


def _set_flags(data: bytes, set_bits: int = 0, clear_bits: int = 0) -> bytes:
    """Change the general-purpose flags of the (only) member, in both of its headers."""
    out = bytearray(data)
    for offset in (6, out.rfind(b"PK\x01\x02") + 8):
        (flags,) = struct.unpack_from("<H", out, offset)
        struct.pack_into("<H", out, offset, (flags | set_bits) & ~clear_bits)
    return bytes(out)


def test_a_name_flagged_utf8_that_is_not_is_refused_naming_the_archive():
    data = bytearray(raw_zip([("aXb.jpg", GOOD)], zipfile.ZIP_STORED))
    for start in (data.find(b"aXb.jpg"), data.rfind(b"aXb.jpg")):
        data[start + 1] = 0xFF  # not UTF-8
    with pytest.raises(InvalidRequest, match="'bad.zip' looks like a zip archive"):
        _expand({"bad.zip": _set_flags(bytes(data), set_bits=UTF8_FLAG)})


def test_a_member_with_corrupt_deflate_data_is_refused_naming_it():
    data = bytearray(raw_zip([("a.jpg", GOOD)]))
    start = data.find(b"a.jpg") + len("a.jpg") + 10
    for i in range(start, start + 200):
        data[i] ^= 0x55
    with pytest.raises(InvalidRequest, match="'c.zip/a.jpg' cannot be extracted"):
        _expand({"c.zip": bytes(data)})


def test_a_member_whose_data_is_cut_short_is_refused_naming_it():
    data = bytearray(raw_zip([("a.jpg", GOOD)]))
    central = data.rfind(b"PK\x01\x02")
    cut = data.find(b"a.jpg") + len("a.jpg") + 100
    data = data[:cut] + data[central:]  # the member's data ends early; the directory stays
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<I", data, end + 16, cut)  # where the central directory now starts
    with pytest.raises(InvalidRequest, match="'t.zip/a.jpg' cannot be extracted"):
        _expand({"t.zip": bytes(data)})


def test_utf8_names_without_the_utf8_flag_are_kept_as_written():
    # Info-ZIP, macOS and others write UTF-8 names without setting the flag.
    data = _set_flags(raw_zip([("Ábaco-血液.jpg", GOOD)]), clear_bits=UTF8_FLAG)
    assert [s.filename for s in _expand({"u.zip": data})] == ["u.zip/Ábaco-血液.jpg"]
    # A Windows archive's cp437 name (0x82 is 'é') is not UTF-8: still read as cp437.
    windows = bytearray(raw_zip([("cafX.jpg", GOOD)], zipfile.ZIP_STORED))
    for start in (windows.find(b"cafX.jpg"), windows.rfind(b"cafX.jpg")):
        windows[start + 3] = 0x82
    assert [s.filename for s in _expand({"w.zip": bytes(windows)})] == ["w.zip/café.jpg"]


def test_an_archive_listing_far_more_entries_than_a_batch_holds_is_refused_before_listing():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.jpg", GOOD)
        for i in range(300):  # folders: no slides, but each costs memory to list
            archive.writestr(zipfile.ZipInfo(f"d{i}/"), b"")
    with pytest.raises(TooLarge, match="BLOODCOUNT_MAX_FILES_PER_BATCH"):
        _expand({"many.zip": buffer.getvalue()}, max_files=10)  # at most 200 entries


@pytest.mark.parametrize(
    "name",
    [
        "a\x85b.jpg",  # NEL, a C1 control and a line break to str.splitlines
        "slide\u202egpj.exe",  # right-to-left override: shows as 'slideexe.jpg'
        "a\u2028b.jpg",  # line separator
    ],
)
def test_names_with_c1_controls_line_separators_or_bidi_overrides_are_refused(name):
    with pytest.raises(InvalidRequest, match="control character"):
        _expand({name: GOOD})
    with pytest.raises(InvalidRequest, match="control character"):
        _expand({"z.zip": raw_zip([(name, GOOD)])})


def test_a_slide_name_longer_than_the_database_holds_is_refused_not_cut():
    """A 254-character zip name, a slash and a 255-character member path make 510; the
    slide's name (500 at most) used to lose its end without a word."""
    from tests.servicekit import zip_of

    member = "d" * 200 + "/" + "m" * 50 + ".jpg"
    with pytest.raises(InvalidRequest, match=r"named 510 characters long .* at most 500"):
        _expand({"z" * 250 + ".zip": zip_of({member: GOOD})})
    (slide,) = _expand({"z" * 240 + ".zip": zip_of({member: GOOD})})
    assert len(slide.filename) == 500 and slide.filename.endswith("m.jpg")
