"""Object storage for slide images and overlays: one interface, a folder and an S3 backend.

Keys are slash-separated relative names (``labs/3/batches/<id>/<slide>.jpg``). They are
always built by the service, never taken from a user, and :func:`validate_key` refuses any
key that could leave the store's root, whatever the backend.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlparse

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_KEY_LENGTH = 1024
# Objects written or checked at once by put_all / each_concurrently: a PUT to S3 or a
# file's fsync is mostly waiting, and botocore's pool holds 10 connections per client.
STORE_THREADS = 8
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


class StorageError(Exception):
    """The store could not do what was asked (transient or not)."""


class InvalidKeyError(StorageError, ValueError):
    """A key that is empty, absolute, climbs out of the root or holds control characters."""


class ObjectNotFound(StorageError, KeyError):
    """No object under that key."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "object not found"


class PresignNotSupported(StorageError):
    """The backend cannot hand out URLs (the folder backend)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str | None
    modified: datetime | None = None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise InvalidKeyError."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("object key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"object key is longer than {MAX_KEY_LENGTH} characters")
    if _BAD_CHARS.search(key):
        raise InvalidKeyError(f"object key {key!r} holds a control character or a backslash")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise InvalidKeyError(f"object key {key!r} is absolute; keys are relative")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidKeyError(f"object key {key!r} has an empty, '.' or '..' segment")
    return key


class ObjectStore(ABC):
    """What the service needs from a blob store."""

    @abstractmethod
    def put(self, key: str, data: bytes | BinaryIO, content_type: str | None = None) -> None:
        """Store ``data`` under ``key``, replacing any object there, all or nothing."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound if there is none."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo:
        """Size and content type; ObjectNotFound if there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abstractmethod
    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose keys start with ``prefix``, in lexical order, with size and age."""

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix``, in lexical order."""
        return (info.key for info in self.list_info(prefix))

    def exists(self, key: str) -> bool:
        try:
            self.info(key)
        except ObjectNotFound:
            return False
        return True

    def presigned_get_url(self, key: str, expires: int = 3600) -> str:
        raise PresignNotSupported(f"{type(self).__name__} cannot make download URLs")

    def presigned_put_url(
        self, key: str, expires: int = 3600, content_type: str | None = None
    ) -> str:
        raise PresignNotSupported(f"{type(self).__name__} cannot make upload URLs")

    def check(self) -> None:  # noqa: B027 - a store that is always reachable need not override
        """Raise StorageError if the store cannot be reached (for readiness probes)."""


class FolderStore(ObjectStore):
    """Objects as files under a root folder; writes are atomic (temp file, then rename)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        # Belt and braces: a symlink inside the root must not lead outside it either.
        if not path.is_relative_to(self.root):
            raise InvalidKeyError(f"object key {key!r} resolves outside the store")
        return path

    def put(self, key: str, data: bytes | BinaryIO, content_type: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes | bytearray | memoryview):
                    out.write(data)
                else:
                    while chunk := data.read(1024 * 1024):
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(f"no object at {key!r}") from None

    def info(self, key: str) -> ObjectInfo:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object at {key!r}")
        return _file_info(key, path)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        found = []
        # Walk only the prefix's folder (one batch's, say), not the whole store.
        start = (self.root / prefix.rpartition("/")[0]).resolve()
        if not start.is_relative_to(self.root) or not start.is_dir():
            return iter(())
        for path in start.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append((key, path))
        return (_file_info(key, path) for key, path in sorted(found))

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"store folder {self.root} is not writable")


class S3Store(ObjectStore):
    """Objects in an S3 bucket (AWS, MinIO, moto), optionally under a key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client=None,
    ):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                # Path-style works with MinIO and moto without wildcard DNS.
                s3={"addressing_style": "path"},
            ),
        )

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise ObjectNotFound(f"no object at {key!r}") from None
            raise StorageError(
                f"S3 {what} {key!r} in bucket {self.bucket!r} failed: {code}"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {what} {key!r} failed: {exc}") from exc

    def put(self, key: str, data: bytes | BinaryIO, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        # A single PutObject is atomic: readers see the old object or the new one.
        self._call(
            "put",
            key,
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._full(key),
            Body=data,
            **extra,
        )

    def get(self, key: str) -> bytes:
        response = self._call(
            "get", key, self.client.get_object, Bucket=self.bucket, Key=self._full(key)
        )
        return response["Body"].read()

    def info(self, key: str) -> ObjectInfo:
        head = self._call(
            "head", key, self.client.head_object, Bucket=self.bucket, Key=self._full(key)
        )
        return ObjectInfo(key=key, size=head["ContentLength"], content_type=head.get("ContentType"))

    def delete(self, key: str) -> None:
        self._call(
            "delete", key, self.client.delete_object, Bucket=self.bucket, Key=self._full(key)
        )

    def list_info(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(
            "list", prefix, paginator.paginate, Bucket=self.bucket, Prefix=full_prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"][strip:],
                    size=item["Size"],
                    content_type=None,
                    modified=item.get("LastModified"),
                )

    def presigned_get_url(self, key: str, expires: int = 3600) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._full(key)}, ExpiresIn=expires
        )

    def presigned_put_url(
        self, key: str, expires: int = 3600, content_type: str | None = None
    ) -> str:
        params = {"Bucket": self.bucket, "Key": self._full(key)}
        if content_type:
            params["ContentType"] = content_type
        return self.client.generate_presigned_url("put_object", Params=params, ExpiresIn=expires)

    def check(self) -> None:
        try:
            self._call("head bucket", "", self.client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound:
            raise StorageError(f"S3 bucket {self.bucket!r} does not exist") from None

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (development and tests; production pre-creates)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)


class Skipped(StorageError):
    """An item :func:`each_concurrently` did not try, because an earlier one had failed."""


def each_concurrently(
    fn: Callable[[T], Any], items: Sequence[T], threads: int = STORE_THREADS
) -> list[Any]:
    """``[fn(item) for item in items]``, up to ``threads`` at once, in order.

    An item whose call raised has the exception in its place. Once one has failed, items
    not yet started get :class:`Skipped` instead of a try: a store that is down then costs
    one timeout per thread, not one per item.
    """
    failed = threading.Event()

    def call(item: T) -> Any:
        if failed.is_set():
            return Skipped("not tried: an earlier object failed")
        try:
            return fn(item)
        except Exception as exc:
            failed.set()
            return exc

    if len(items) <= 1 or threads <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(call, items))


def first_error(results: Sequence[Any]) -> Exception | None:
    """The first real failure among :func:`each_concurrently`'s results (not a Skipped)."""
    errors = [r for r in results if isinstance(r, Exception)]
    real = [e for e in errors if not isinstance(e, Skipped)]
    return (real or errors or [None])[0]


def put_all(
    store: ObjectStore,
    objects: Sequence[tuple[str, bytes, str | None]],
    threads: int = STORE_THREADS,
) -> None:
    """Write every ``(key, data, content_type)``, several at once; all or nothing.

    Written one by one, 500 slides cost 500 fsyncs (or S3 round trips) in a row before
    the first can be queued. If any write fails, the ones that succeeded are deleted again
    and the first error is raised.
    """
    results = each_concurrently(lambda o: store.put(*o), objects, threads)
    error = first_error(results)
    if error is None:
        return
    for (key, _, _), result in zip(objects, results, strict=True):
        if not isinstance(result, Exception):
            try:
                store.delete(key)
            except Exception:  # an orphan object is harmless; the sweeper removes it
                log.warning("could not delete %s after a failed write", key, exc_info=True)
    raise error


def _file_info(key: str, path: Path) -> ObjectInfo:
    stat = path.stat()
    return ObjectInfo(
        key=key,
        size=stat.st_size,
        content_type=None,
        modified=datetime.fromtimestamp(stat.st_mtime, UTC),
    )


def open_store(
    storage_url: str, endpoint_url: str | None = None, region: str = "us-east-1"
) -> ObjectStore:
    """The store named by a settings URL: ``file://PATH`` or ``s3://BUCKET/PREFIX``."""
    parsed = urlparse(storage_url)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path, endpoint_url=endpoint_url, region=region)
    if parsed.scheme in ("file", ""):
        # file://var/objects is relative (netloc "var"); file:///srv/objects is absolute.
        path = parsed.netloc + parsed.path if parsed.scheme == "file" else storage_url
        return FolderStore(path or ".")
    raise StorageError(f"unknown storage URL scheme {parsed.scheme!r} in {storage_url!r}")


def store_from_settings(settings) -> ObjectStore:
    return open_store(settings.storage_url, settings.s3_endpoint_url, settings.s3_region)
