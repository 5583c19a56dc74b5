"""Where staged uploads and blobs live: one interface, two backends.

- ``LocalObjectStore``: a directory (``DATA_DIR``), the single-machine default. Keys are relative paths.
- ``S3ObjectStore``: any S3-compatible store through boto3, chosen by ``BLOB_STORE_URL=s3://bucket/prefix``
  with ``BLOB_STORE_ENDPOINT`` and the credentials settings. The API and the workers then share nothing
  but URLs (Redis, Weaviate and this store): uploads are staged here, workers read them from here, and the
  API serves thumbnails and originals from here.

Keys are ``/``-separated, relative, without ``..`` or empty parts; ``child(prefix)`` gives a store rooted
below another (the blob store is ``root.child("blobs")``, staging ``root.child("staging")``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse

from indexer.errors import InvalidInput
from indexer.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

_KEY_PART = re.compile(r"[A-Za-z0-9._-]+")


class ObjectMissing(FileNotFoundError):
    """No object under this key."""


def check_key(key: str) -> str:
    """A key as stored: relative, ``/``-separated parts of safe characters, never ``.`` or ``..``."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _KEY_PART.fullmatch(p) for p in parts):
        raise InvalidInput(f"malformed object key {key[:200]!r}")
    return key


class ObjectStore(ABC):
    """Bytes under keys. Every backend is safe to share between threads."""

    @property
    @abstractmethod
    def url(self) -> str:
        """Where this store is, for logs and /health (never with credentials)."""

    @property
    def local_root(self) -> Path | None:
        """The directory behind this store when it is one on this machine, else None."""
        return None

    @abstractmethod
    def child(self, prefix: str) -> ObjectStore:
        """The store of the keys below ``prefix``."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; ObjectMissing when there is none."""

    @abstractmethod
    def download(self, key: str, path: Path) -> None:
        """Copy the object to a local file; ObjectMissing when there is none."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's length in bytes; ObjectMissing when there is none."""

    @abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start`` (fewer at the end); ObjectMissing when there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove one object; True when it was there."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object below ``prefix``; how many."""

    @abstractmethod
    def check(self) -> None:
        """Raise when the store cannot be reached (health checks, start-up)."""

    def put_stream(self, key: str, stream: IO[bytes], head_bytes: int = 16) -> tuple[int, bytes]:
        """Store a stream; its size and its first ``head_bytes`` bytes (the format sniff needs them)."""
        size = 0
        head = b""
        with tempfile.NamedTemporaryFile(prefix="clipsearch-upload-") as tmp:
            while chunk := stream.read(1024 * 1024):
                if len(head) < head_bytes:
                    head += chunk[: head_bytes - len(head)]
                size += len(chunk)
                tmp.write(chunk)
            tmp.flush()
            if size:
                self.put_file(key, Path(tmp.name))
        return size, head


class LocalObjectStore(ObjectStore):
    """A directory: keys are paths below it. Writes are atomic (a temporary file, then a rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def url(self) -> str:
        return self.root.as_uri() if self.root.is_absolute() else str(self.root)

    @property
    def local_root(self) -> Path:
        return self.root

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def child(self, prefix: str) -> LocalObjectStore:
        return LocalObjectStore(self.path(prefix))

    def _write(self, key: str, write: Any) -> None:
        path = self.path(key)
        if path.exists():  # content-addressed callers: same name, same content
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda handle: handle.write(data))

    def put_file(self, key: str, path: Path) -> None:
        def copy(handle: IO[bytes]) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, handle)

        self._write(key, copy)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectMissing(key) from exc

    def download(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self.path(key), path)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectMissing(key) from exc

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self.path(key).open("rb") as f:
                f.seek(start)
                return f.read(length)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectMissing(key) from exc

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def delete_prefix(self, prefix: str) -> int:
        path = self.path(prefix)
        if not path.is_dir():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path, ignore_errors=True)
        return count

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


class S3ObjectStore(ObjectStore):
    """A bucket (and a key prefix in it) of an S3-compatible store."""

    def __init__(self, client: S3Client, bucket: str, prefix: str, endpoint: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStore:
        parsed = urlparse(settings.blob_store_url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(
                f"BLOB_STORE_URL must look like s3://bucket/prefix, not {settings.blob_store_url!r}"
            )
        return cls(make_s3_client(settings), parsed.netloc, parsed.path, settings.blob_store_endpoint)

    @property
    def url(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def child(self, prefix: str) -> S3ObjectStore:
        return S3ObjectStore(self.client, self.bucket, self._key(prefix), self.endpoint)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(key))

    def put_stream(self, key: str, stream: IO[bytes], head_bytes: int = 16) -> tuple[int, bytes]:
        """A seekable stream (the API's spooled upload) is uploaded from where it is, in parts, with no
        local copy; any other one goes through a temporary file (the base class)."""
        if not stream.seekable():
            return super().put_stream(key, stream, head_bytes)
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        head = stream.read(head_bytes)
        stream.seek(0)
        if size:
            self.client.upload_fileobj(stream, self.bucket, self._key(key))
        return size, head

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise ObjectMissing(key) from exc
        except Exception as exc:  # botocore's errors share no narrower base; _missing tells a 404 apart
            if self._missing(exc):
                raise ObjectMissing(key) from exc
            raise

    def download(self, key: str, path: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except Exception as exc:  # s3transfer wraps botocore's errors; only a 404 is translated
            if self._missing(exc):
                raise ObjectMissing(key) from exc
            raise

    def size(self, key: str) -> int:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except Exception as exc:  # as in get_bytes: a 404 is ObjectMissing, anything else is re-raised
            if self._missing(exc):
                raise ObjectMissing(key) from exc
            raise

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """One GetObject with a Range header: only these bytes cross the network."""
        if length <= 0:
            return b""
        try:
            reply = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{start + length - 1}"
            )
            return reply["Body"].read()
        except Exception as exc:  # as in get_bytes; a range past the end (416) reads as nothing
            if self._missing(exc):
                raise ObjectMissing(key) from exc
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("416", "InvalidRange"):
                return b""
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:  # as in read(): a 404 is False, anything else is re-raised
            if self._missing(exc):
                return False
            raise

    def delete(self, key: str) -> bool:
        there = self.exists(key)
        if there:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        return there

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix) + "/"):
            keys: list[ObjectIdentifierTypeDef] = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                count += len(keys)
        return count

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)

    def ensure_bucket(self) -> None:
        """Create the bucket when it is missing (the local stack's store starts empty)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception:  # any refusal of HEAD: try to create; a real fault fails there, with its error
            self.client.create_bucket(Bucket=self.bucket)


_clients: dict[tuple[str, str, str, str], Any] = {}
_clients_lock = threading.Lock()


def make_s3_client(settings: Settings) -> S3Client:
    """One boto3 client per endpoint and credentials in this process (clients are thread-safe)."""
    import boto3
    from botocore.config import Config

    key = (
        settings.blob_store_endpoint,
        settings.blob_store_access_key,
        settings.blob_store_secret_key,
        settings.blob_store_region,
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=settings.blob_store_endpoint or None,
                aws_access_key_id=settings.blob_store_access_key or None,
                aws_secret_access_key=settings.blob_store_secret_key or None,
                region_name=settings.blob_store_region,
                config=Config(
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                    # Plain S3 checksums: not every S3-compatible server knows the newer CRC trailers.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
            _clients[key] = client
    return client


def open_store(settings: Settings) -> ObjectStore:
    """The root store of these settings: DATA_DIR, or the S3 bucket and prefix of BLOB_STORE_URL."""
    if settings.blob_store_url:
        return S3ObjectStore.from_settings(settings)
    return LocalObjectStore(settings.data_dir)
