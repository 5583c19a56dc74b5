"""Multipart file parts written once, straight into the staging area (issue 9).

Werkzeug spools every file part of a multipart body into a SpooledTemporaryFile (memory up to 500 KB,
then an anonymous temporary file), and staging then copied it: each uploaded byte was written twice.
`SpoolingRequest` gives werkzeug a named file in DATA_DIR/staging/.incoming instead, on the staging
area's file system, so staging a part is a rename (`indexer.storage.staging.stage` with `spooled`). With an
object store (BLOB_STORE_URL) the part stays in werkzeug's own spooled file and is uploaded from it with no
second copy (`S3ObjectStore.put_stream`). Either way the API never holds a part in memory past 500 KB.
Parts that no use case claimed (refused ones, a request that failed) are removed when the request closes.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from flask import Flask, Request, current_app
from werkzeug.datastructures import FileStorage

from indexer.services.ingest import Upload
from indexer.settings import Settings

SPOOL_DIR = "CLIPSEARCH_UPLOAD_SPOOL_DIR"
INCOMING = ".incoming"
# The routes whose file parts are staged for ingest; others (a query image) keep werkzeug's spooling.
STAGED_ENDPOINTS = frozenset({"uploads.upload_files", "uploads.upload_zip", "upload_sessions.append_files"})
STALE_SPOOL_S = 24 * 3600  # no request runs this long (gunicorn's timeout is minutes)


class SpoolingRequest(Request):
    """A request whose multipart file parts are written to named files in the app's spool directory."""

    _spool_paths: list[Path] | None = None

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        directory = current_app.config.get(SPOOL_DIR)
        if directory is None or filename is None or self.endpoint not in STAGED_ENDPOINTS:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        directory.mkdir(parents=True, exist_ok=True)
        path = Path(directory) / f"part-{uuid.uuid4().hex}"
        if self._spool_paths is None:
            self._spool_paths = []
        self._spool_paths.append(path)
        return path.open("xb+")

    def close(self) -> None:
        try:
            super().close()
        finally:
            for path in self._spool_paths or ():
                path.unlink(missing_ok=True)  # staged ones were renamed away already


def install_spooling(app: Flask, settings: Settings) -> None:
    """Spool file parts into the staging area when it is a local directory (no BLOB_STORE_URL). Parts
    left behind by an API process that died mid-request (older than STALE_SPOOL_S) are removed."""
    app.request_class = SpoolingRequest
    directory = None if settings.blob_store_url else settings.staging_dir / INCOMING
    app.config[SPOOL_DIR] = directory
    if directory is not None and directory.is_dir():
        cutoff = time.time() - STALE_SPOOL_S
        for path in directory.glob("part-*"):
            with contextlib.suppress(OSError):  # another API process may have just removed it
                if path.stat().st_mtime < cutoff:
                    path.unlink()


def spooled_path(f: FileStorage) -> Path | None:
    """The named spool file behind a part, when SpoolingRequest wrote it to one."""
    directory = current_app.config.get(SPOOL_DIR)
    name = getattr(f.stream, "name", None)
    if directory is None or not isinstance(name, str):
        return None
    path = Path(name)
    return path if path.parent == Path(directory) else None


def upload_of(f: FileStorage) -> Upload:
    return Upload(f.filename or "", f.mimetype or None, f.stream, spooled_path(f))


def saver(f: FileStorage) -> Callable[[Path], None]:
    """Put a part at a path: a rename of its spool file when there is one, else a copy."""
    spooled = spooled_path(f)

    def save(path: Path) -> None:
        if spooled is None:
            f.save(path)
            return
        f.stream.flush()
        os.replace(spooled, path)

    return save
