"""Content-addressed storage of originals and thumbnails on a local (or shared) filesystem."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def original_path(self, sha256: str) -> Path:
        return self.root / "originals" / sha256[:2] / sha256

    def thumbnail_path(self, sha256: str) -> Path:
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
