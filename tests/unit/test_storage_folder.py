import io
import os

import pytest

from bloodcount.storage import (
    FolderStore,
    InvalidKeyError,
    ObjectNotFound,
    PresignNotSupported,
    Skipped,
    StorageError,
    each_concurrently,
    first_error,
    open_store,
    put_all,
    validate_key,
)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a//b",
        "./a",
        "a/.",
        "C:/x",
        "a\\b",
        "a\x00b",
        "x" * 1025,
    ],
)
def test_bad_keys_are_refused(key):
    with pytest.raises(InvalidKeyError):
        validate_key(key)


def test_good_keys_pass():
    assert validate_key("labs/1/batches/abc/slide.jpg") == "labs/1/batches/abc/slide.jpg"
    assert validate_key("ünïcode name.png") == "ünïcode name.png"


def test_round_trip_and_listing(tmp_path):
    store = FolderStore(tmp_path / "objects")
    store.put("a/1.bin", b"one")
    store.put("a/2.bin", io.BytesIO(b"two" * 1000))
    store.put("b/3.bin", b"three")
    assert store.get("a/1.bin") == b"one"
    assert store.info("a/2.bin").size == 3000
    assert list(store.list("a/")) == ["a/1.bin", "a/2.bin"]
    assert store.exists("b/3.bin")
    store.delete("b/3.bin")
    store.delete("b/3.bin")  # deleting twice is fine
    assert not store.exists("b/3.bin")
    with pytest.raises(ObjectNotFound):
        store.get("b/3.bin")


def test_keys_cannot_escape_the_root(tmp_path):
    store = FolderStore(tmp_path / "objects")
    (tmp_path / "secret").write_text("x")
    for key in ["../secret", "a/../../secret", "/tmp/x"]:
        with pytest.raises(InvalidKeyError):
            store.get(key)
        with pytest.raises(InvalidKeyError):
            store.put(key, b"x")
    # A symlink planted inside the root does not lead out either.
    os.symlink(tmp_path, tmp_path / "objects" / "link")
    with pytest.raises(InvalidKeyError):
        store.get("link/secret")


def test_failed_write_leaves_old_object_and_no_temp_file(tmp_path):
    store = FolderStore(tmp_path)
    store.put("k", b"old")

    class Exploding(io.BytesIO):
        def read(self, *args):
            raise OSError("disk went away")

    with pytest.raises(OSError):
        store.put("k", Exploding())
    assert store.get("k") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_put_all_writes_every_object(tmp_path):
    store = FolderStore(tmp_path)
    objects = [(f"b/{i:03d}.jpg", bytes([i]) * 10, "image/jpeg") for i in range(40)]
    put_all(store, objects, threads=8)
    assert [store.get(key) for key, _, _ in objects] == [data for _, data, _ in objects]


def test_put_all_is_all_or_nothing(tmp_path):
    class FailsOne(FolderStore):
        def put(self, key, data, content_type=None):
            if key == "b/013.jpg":
                raise StorageError("disk full")
            super().put(key, data, content_type)

    store = FailsOne(tmp_path)
    objects = [(f"b/{i:03d}.jpg", b"x", "image/jpeg") for i in range(40)]
    with pytest.raises(StorageError, match="disk full"):
        put_all(store, objects, threads=8)
    assert list(store.list()) == []  # those written before the failure are gone again


def test_each_concurrently_keeps_order_and_returns_errors_in_place():
    results = each_concurrently(lambda n: n / 2, list(range(6)), threads=4)
    assert results == [0, 0.5, 1, 1.5, 2, 2.5]
    results = each_concurrently(lambda n: 1 / (n - 3), list(range(6)), threads=1)
    assert results[:3] == [-1 / 3, -0.5, -1]
    assert isinstance(results[3], ZeroDivisionError)
    assert all(isinstance(r, Skipped) for r in results[4:])  # not tried after the failure
    assert first_error(results) is results[3]


def test_a_store_that_is_down_is_tried_once_per_thread_not_once_per_object():
    tried = []

    def unreachable(item):
        tried.append(item)
        raise StorageError("connect timeout")

    results = each_concurrently(unreachable, list(range(100)), threads=4)
    assert len(tried) <= 4
    assert isinstance(first_error(results), StorageError)
    assert not isinstance(first_error(results), Skipped)


def test_folder_store_has_no_presigned_urls(tmp_path):
    with pytest.raises(PresignNotSupported):
        FolderStore(tmp_path).presigned_put_url("k")


def test_open_store_reads_relative_and_absolute_file_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_store("file://var/objects").root == (tmp_path / "var" / "objects").resolve()
    assert open_store(f"file://{tmp_path}/abs").root == (tmp_path / "abs").resolve()
