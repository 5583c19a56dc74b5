"""Content-addressed storage of originals and thumbnails, in an object store (indexer/storage/objectstore.py):
a local directory (the default) or an S3-compatible bucket shared by the API and every worker."""

from __future__ import annotations

import re
from pathlib import Path

from indexer.errors import InvalidInput, MissingOriginal
from indexer.settings import Settings
from indexer.storage.objectstore import LocalObjectStore, ObjectMissing, ObjectStore, open_store

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def check_sha256(sha256: object) -> str:
    """A content hash as stored: exactly 64 lowercase hex characters (so never a path)."""
    if not isinstance(sha256, str) or not SHA256_PATTERN.fullmatch(sha256):
        raise InvalidInput("malformed sha256: expected exactly 64 lowercase hex characters")
    return sha256


def original_key(sha256: str) -> str:
    check_sha256(sha256)
    return f"originals/{sha256[:2]}/{sha256}"


def thumbnail_key(sha256: str) -> str:
    check_sha256(sha256)
    return f"thumbnails/{sha256[:2]}/{sha256}.jpg"


class BlobStore:
    """``BlobStore(root)``: blobs in a local directory; ``BlobStore(store=...)`` or ``from_settings``:
    in whichever object store the settings name (BLOB_STORE_URL)."""

    def __init__(self, root: Path | None = None, store: ObjectStore | None = None) -> None:
        if store is None:
            if root is None:
                raise ValueError("BlobStore needs a root directory or an object store")
            store = LocalObjectStore(root)
        self.store = store
        self.root = store.local_root  # None when the blobs are not on this machine

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        if settings.blob_store_url:
            return cls(store=open_store(settings).child("blobs"))
        return cls(settings.blob_dir)

    def _local(self) -> Path:
        if self.root is None:
            raise RuntimeError(f"the blobs are in {self.store.url}, not on this machine: no path")
        return self.root

    # Paths: only for a local store (tests, and callers that predate the object store).
    def original_path(self, sha256: str) -> Path:
        return self._local() / original_key(sha256)

    def thumbnail_path(self, sha256: str) -> Path:
        return self._local() / thumbnail_key(sha256)

    def _key(self, sha256: str, part: str) -> str:
        return thumbnail_key(sha256) if part == "thumbnail" else original_key(sha256)

    def _missing(self, sha256: str, part: str) -> MissingOriginal:
        return MissingOriginal(
            f"the {part} of these bytes is missing from the blob store", {"sha256": sha256, "part": part}
        )

    def existing_path(self, sha256: str, part: str = "original") -> Path:
        """The path of a stored original (or ``part="thumbnail"``); MissingOriginal when it is gone."""
        path = self._local() / self._key(sha256, part)
        if not path.is_file():
            raise self._missing(sha256, part)
        return path

    def has(self, sha256: str, part: str = "original") -> bool:
        return self.store.exists(self._key(sha256, part))

    def read(self, sha256: str, part: str = "original") -> bytes:
        """The stored original's (or thumbnail's) bytes; MissingOriginal (404) when it is gone."""
        try:
            return self.store.get_bytes(self._key(sha256, part))
        except ObjectMissing as exc:
            raise self._missing(sha256, part) from exc

    def read_original(self, sha256: str) -> bytes:
        """The stored original's bytes; MissingOriginal (404) when it is gone, on every path that needs it."""
        return self.read(sha256, "original")

    def read_thumbnail(self, sha256: str) -> bytes:
        return self.read(sha256, "thumbnail")

    def put_original(self, sha256: str, data: bytes) -> Path | None:
        """Store the original (a no-op when these bytes are there); its path when the store is local."""
        key = original_key(sha256)
        self.store.put_bytes(key, data)
        return self.root / key if self.root is not None else None

    def put_thumbnail(self, sha256: str, jpeg: bytes) -> Path | None:
        key = thumbnail_key(sha256)
        self.store.put_bytes(key, jpeg)
        return self.root / key if self.root is not None else None

    def delete(self, sha256: str) -> int:
        """Remove the original and the thumbnail of these bytes (indexer.storage.gc decides when); 1 if
        any was there."""
        removed = 0
        for key in (original_key(sha256), thumbnail_key(sha256)):
            if self.store.delete(key):
                removed = 1
        return removed
