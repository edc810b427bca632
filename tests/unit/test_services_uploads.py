"""Sniffing uploads by content and expanding zip archives safely."""

from __future__ import annotations

import io

import pytest

from bloodcount.services import InvalidRequest, TooLarge, expand_uploads
from bloodcount.services.uploads import sniff
from tests.servicekit import smear_bytes, zip_of


@pytest.mark.parametrize(
    ("head", "content_type"),
    [
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"II*\x00", "image/tiff"),
        (b"MM\x00*", "image/tiff"),
        (b"II+\x00", "image/tiff"),  # BigTIFF
        (b"MM\x00+", "image/tiff"),
        (b"BM\x00\x00", "image/bmp"),
        (b"PK\x03\x04", "application/zip"),
    ],
)
def test_sniff_knows_images_and_zips(head, content_type):
    assert sniff(head).content_type == content_type


@pytest.mark.parametrize("head", [b"", b"GIF89a", b"%PDF-1.7", b"<html>"])
def test_sniff_refuses_the_rest(head):
    assert sniff(head) is None


def _expand(files, max_files=10, max_bytes=10_000_000):
    return expand_uploads([(n, io.BytesIO(d)) for n, d in files.items()], max_files, max_bytes)


def test_zip_members_become_slides_in_name_order_skipping_metadata():
    archive = zip_of(
        {
            "b.png": smear_bytes(1, ".png"),
            "a/c.jpg": smear_bytes(2),
            ".hidden.jpg": b"x",
            "__MACOSX/a/._c.jpg": b"x",
            "folder/": b"",
        }
    )
    slides = _expand({"x.jpg": smear_bytes(3), "set.zip": archive})
    assert [s.filename for s in slides] == ["x.jpg", "set.zip/a/c.jpg", "set.zip/b.png"]
    assert [s.suffix for s in slides] == [".jpg", ".jpg", ".png"]


def test_a_zip_with_a_non_image_is_refused_naming_the_member():
    with pytest.raises(InvalidRequest, match="set.zip/readme.txt"):
        _expand({"set.zip": zip_of({"a.jpg": smear_bytes(1), "readme.txt": b"hello"})})


def test_nested_zip_is_refused():
    inner = zip_of({"a.jpg": smear_bytes(1)})
    with pytest.raises(InvalidRequest, match="outer.zip/inner.zip"):
        _expand({"outer.zip": zip_of({"inner.zip": inner})})


def test_corrupt_zip_is_refused():
    with pytest.raises(InvalidRequest, match="cannot be opened"):
        _expand({"bad.zip": b"PK\x03\x04" + b"\x00" * 40})


def test_limits_on_count_and_uncompressed_size():
    with pytest.raises(TooLarge, match="MAX_FILES"):
        _expand({f"{i}.jpg": smear_bytes(1) for i in range(3)}, max_files=2)
    with pytest.raises(TooLarge, match="MAX_UPLOAD_BYTES"):
        _expand({"bomb.zip": zip_of({"big.bmp": b"BM" + bytes(2_000_000)})}, max_bytes=1_000_000)
    with pytest.raises(InvalidRequest, match="no slides"):
        _expand({"empty.zip": zip_of({})})


def _jpeg_and_mpo(seed: int) -> tuple[bytes, bytes]:
    """A smear as a plain JPEG, and as the MPO a camera writes (a preview appended)."""
    from PIL import Image

    smear = Image.open(io.BytesIO(smear_bytes(seed))).convert("RGB")
    plain, mpo = io.BytesIO(), io.BytesIO()
    smear.save(plain, "JPEG", quality=90)
    smear.save(mpo, "MPO", save_all=True, append_images=[smear.resize((80, 60))], quality=90)
    return plain.getvalue(), mpo.getvalue()


def test_complete_images_with_data_after_them_pass_the_upload_check():
    # A phone's motion photo (a video after the JPEG), a maker's trailer, a camera's MPO.
    jpeg, mpo = _jpeg_and_mpo(5)
    png = smear_bytes(6, ".png")
    files = {"motion.jpg": jpeg + b"\x00" * 20_000, "camera.jpg": mpo, "t.png": png + bytes(9000)}
    slides = expand_uploads(
        [(n, io.BytesIO(d)) for n, d in files.items()], 10, 10_000_000, max_pixels=10**7
    )
    assert sorted(s.filename for s in slides) == sorted(files)
    for name, data in (("cut.jpg", jpeg), ("cut.png", png)):
        with pytest.raises(InvalidRequest, match=f"{name}' is a truncated"):
            expand_uploads(
                [(name, io.BytesIO(data[: len(data) // 2] + b"\x00" * 20_000))],
                10,
                10_000_000,
                max_pixels=10**7,
            )
