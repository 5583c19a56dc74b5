"""Where backups go: a directory or an S3 prefix, only among the ones the settings allow.

The default is BACKUP_URL (empty: DATA_DIR/backups); BACKUP_TARGETS lists the others a request may name.
A requested target must be one of those or lie below one, so that an API key cannot make the service (or
Weaviate) write or read anywhere else on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from weaviate.backup.backup import BackupStorage
from weaviate.backup.backup_location import BackupLocation, BackupLocationType

from indexer.errors import Forbidden, InvalidInput
from indexer.settings import Settings
from indexer.storage.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore, make_s3_client

WEAVIATE_PART = "weaviate"


@dataclass(frozen=True)
class Place:
    """A parsed target: a local directory (``bucket`` empty) or an S3 bucket and key prefix."""

    path: str
    bucket: str = ""

    @property
    def is_s3(self) -> bool:
        return bool(self.bucket)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.path}".rstrip("/") if self.is_s3 else self.path

    def contains(self, other: Place) -> bool:
        if self.bucket != other.bucket:
            return False
        if self.is_s3:
            return other.path == self.path or not self.path or other.path.startswith(self.path + "/")
        return Path(other.path).is_relative_to(Path(self.path))


def parse_place(url: str) -> Place:
    """``s3://bucket/prefix`` or a directory (made absolute, with `..` and links resolved)."""
    url = url.strip()
    if not url:
        raise InvalidInput("empty backup target")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url) or not _encodable(url):
        raise InvalidInput("a backup target has no control characters and is valid UTF-8")
    if url.startswith("s3://"):
        parsed = urlparse(url)
        prefix = str(PurePosixPath("/" + parsed.path)).strip("/")
        if not parsed.netloc or ".." in prefix.split("/"):
            raise InvalidInput(f"a backup target on S3 looks like s3://bucket/prefix, not {url!r}")
        return Place(prefix, parsed.netloc)
    if "://" in url:
        raise InvalidInput(f"a backup target is a directory or s3://bucket/prefix, not {url!r}")
    return Place(str(Path(url).expanduser().resolve()))


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate from JSON's \ud800 escapes
        return False
    return True


def default_place(settings: Settings) -> Place:
    return parse_place(settings.backup_url or str(settings.data_dir / "backups"))


def allowed_places(settings: Settings) -> list[Place]:
    return [default_place(settings), *(parse_place(url) for url in settings.backup_targets)]


@dataclass(frozen=True)
class BackupTarget:
    """An allowed place with the object store that reads and writes it."""

    place: Place
    store: ObjectStore

    @property
    def url(self) -> str:
        return self.place.url

    def backup_store(self, backup_id: str) -> ObjectStore:
        """The store of one backup's files."""
        return self.store.child(backup_id)

    def weaviate_location(self, backup_id: str) -> tuple[BackupStorage, BackupLocationType]:
        """Weaviate's backend and the location its backup of ``backup_id`` is written to (it adds the id
        below the location: <target>/<id>/weaviate/<id>/)."""
        path = f"{self.place.path}/{backup_id}/{WEAVIATE_PART}".lstrip("/")
        if self.place.is_s3:
            return BackupStorage.S3, BackupLocation.S3(bucket=self.place.bucket, path=path)
        return BackupStorage.FILESYSTEM, BackupLocation.FileSystem(path="/" + path)


def resolve_target(settings: Settings, requested: str | None = None) -> BackupTarget:
    """The target a request names (None: the default), refused unless it is allowed (Forbidden)."""
    place = parse_place(requested) if requested else default_place(settings)
    if not any(allowed.contains(place) for allowed in allowed_places(settings)):
        raise Forbidden(
            f"backup target {place.url!r} is not allowed: use BACKUP_URL or list it in BACKUP_TARGETS",
            {"allowed": [p.url for p in allowed_places(settings)]},
        )
    return BackupTarget(place, open_place(settings, place))


def open_place(settings: Settings, place: Place) -> ObjectStore:
    """A directory's store, or a bucket's through the blob store's endpoint and credentials."""
    if not place.is_s3:
        return LocalObjectStore(Path(place.path))
    return S3ObjectStore(make_s3_client(settings), place.bucket, place.path, settings.blob_store_endpoint)
