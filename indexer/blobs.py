"""Content-addressed storage of originals and thumbnails on a local (or shared) filesystem."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from indexer.errors import InvalidInput

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def check_sha256(sha256: object) -> str:
    """A content hash as stored: exactly 64 lowercase hex characters (so never a path)."""
    if not isinstance(sha256, str) or not SHA256_PATTERN.fullmatch(sha256):
        raise InvalidInput("malformed sha256: expected exactly 64 lowercase hex characters")
    return sha256


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def original_path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / "originals" / sha256[:2] / sha256

    def thumbnail_path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / "thumbnails" / sha256[:2] / f"{sha256}.jpg"

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        if path.exists():  # same name, same content
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_original(self, sha256: str, data: bytes) -> Path:
        path = self.original_path(sha256)
        self._write_atomic(path, data)
        return path

    def put_thumbnail(self, sha256: str, jpeg: bytes) -> Path:
        path = self.thumbnail_path(sha256)
        self._write_atomic(path, jpeg)
        return path

    def delete(self, sha256: str) -> int:
        """Remove the original and the thumbnail of these bytes (blob_gc decides when); 1 if any was there."""
        removed = 0
        for path in (self.original_path(sha256), self.thumbnail_path(sha256)):
            try:
                path.unlink()
                removed = 1
            except FileNotFoundError:
                pass
        return removed
