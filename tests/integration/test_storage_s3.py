"""The S3 backend against moto's server over real HTTP (the same client code as for AWS/MinIO)."""

import urllib.request
import uuid

import pytest

from bloodcount.storage import InvalidKeyError, ObjectNotFound, S3Store, StorageError, open_store

pytestmark = pytest.mark.integration


@pytest.fixture
def store(s3_endpoint):
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    store = S3Store(bucket, prefix="slides", endpoint_url=s3_endpoint)
    store.ensure_bucket()
    return store


def test_round_trip_list_delete(store):
    store.put("a/1.jpg", b"\xff\xd8one", content_type="image/jpeg")
    store.put("a/2.jpg", b"two")
    store.put("b/3.jpg", b"three")
    assert store.get("a/1.jpg") == b"\xff\xd8one"
    info = store.info("a/1.jpg")
    assert (info.size, info.content_type) == (5, "image/jpeg")
    assert list(store.list("a/")) == ["a/1.jpg", "a/2.jpg"]
    store.delete("a/2.jpg")
    assert not store.exists("a/2.jpg")
    with pytest.raises(ObjectNotFound):
        store.get("a/2.jpg")


def test_prefix_is_applied_in_the_bucket(store):
    store.put("k.bin", b"x")
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert keys == ["slides/k.bin"]


def test_presigned_put_then_get_over_http(store):
    url = store.presigned_put_url("up/big.tif", content_type="image/tiff")
    request = urllib.request.Request(
        url, data=b"tiff-bytes", method="PUT", headers={"Content-Type": "image/tiff"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert store.get("up/big.tif") == b"tiff-bytes"
    with urllib.request.urlopen(store.presigned_get_url("up/big.tif"), timeout=10) as response:
        assert response.read() == b"tiff-bytes"


def test_bad_keys_never_reach_s3(store):
    for key in ["../x", "", "/abs", "a//b"]:
        with pytest.raises(InvalidKeyError):
            store.put(key, b"x")


def test_missing_bucket_is_a_clear_error(s3_endpoint):
    store = open_store("s3://no-such-bucket-here/x", endpoint_url=s3_endpoint)
    with pytest.raises(StorageError, match="no-such-bucket-here"):
        store.check()


def test_unreachable_endpoint_is_a_storage_error():
    store = S3Store("b", endpoint_url="http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(StorageError):
        store.put("k", b"x")
