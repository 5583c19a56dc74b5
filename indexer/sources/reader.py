"""The worker's reader: the bytes of one checked job item, whatever its source."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from indexer.errors import InvalidInput
from indexer.settings import Settings
from indexer.sources import ziparchive
from indexer.sources.items import (
    FileItem,
    FolderItem,
    JobItem,
    RejectedItem,
    StagedItem,
    StagedZipItem,
    StoredItem,
    UrlItem,
    ZipItem,
)
from indexer.sources.plan import zip_problem
from indexer.sources.urls import fetch_url
from indexer.storage.blobs import BlobStore
from indexer.storage.objectstore import ObjectMissing
from indexer.storage.staging import staging_store


class ItemReader:
    """Reads items' bytes for one chunk. Items come checked (`indexer.sources.items.check_item`, as the worker
    reads them from Redis), so the reader only dispatches on their type."""

    def __init__(self, settings: Settings, job_id: str | None = None) -> None:
        self.settings = settings
        self.job_id = job_id
        self._archives: dict[str, Path] = {}  # staged_zip: archives fetched from the object store
        self._tmp: str | None = None

    def read(self, item: JobItem) -> bytes:
        match item:
            case RejectedItem():
                raise InvalidInput(item.reason)
            case UrlItem():
                return fetch_url(
                    item.url,
                    allow=self.settings.url_allow,
                    max_bytes=self.settings.url_max_bytes,
                    timeout_s=self.settings.url_timeout_s,
                    max_redirects=self.settings.url_max_redirects,
                )
            case ZipItem():
                return self._read_zip(item, Path(item.path))
            case StagedItem():
                try:
                    return staging_store(self.settings).get_bytes(item.key)
                except ObjectMissing as exc:
                    raise InvalidInput("file disappeared before it could be read") from exc
            case StagedZipItem():
                return self._read_zip(item, self._archive(item.key))
            case StoredItem():  # re-embedding: the original kept at ingest
                return BlobStore.from_settings(self.settings).read_original(item.sha256)
            case FileItem() | FolderItem():
                try:
                    return Path(item.path).read_bytes()
                except FileNotFoundError as exc:
                    raise InvalidInput("file disappeared before it could be read") from exc
                except OSError as exc:
                    raise InvalidInput(f"cannot read file: {exc.strerror}") from exc

    def _archive(self, key: str) -> Path:
        """A staged archive copied from the object store once per reader (removed by `close`)."""
        path = self._archives.get(key)
        if path is None:
            if self._tmp is None:
                self._tmp = tempfile.mkdtemp(prefix="clipsearch-zip-")
            path = Path(self._tmp) / f"{len(self._archives)}.zip"
            try:
                staging_store(self.settings).download(key, path)
            except ObjectMissing as exc:
                raise InvalidInput("archive disappeared before it could be read") from exc
            self._archives[key] = path
        return path

    def _read_zip(self, item: ZipItem | StagedZipItem, path: Path) -> bytes:
        """The entry whose directory record planning found at `record`: only this entry's damage
        (a corrupt stream, a CRC mismatch) fails it, never the chunk."""
        try:
            with path.open("rb") as f:
                directory = ziparchive.read_directory(f, path.stat().st_size)
                entry = ziparchive.entry_at(f, directory, item.record)
                if entry.name != item.entry:
                    raise InvalidInput("malformed job item: the entry at that offset has another name")
                problem = zip_problem(entry, self.settings)
                if problem:
                    raise InvalidInput(problem)
                return ziparchive.read_entry(f, entry, self.settings.zip_max_entry_bytes)
        except FileNotFoundError as exc:
            raise InvalidInput("archive disappeared before it could be read") from exc
        except OSError as exc:
            raise InvalidInput(f"cannot read archive: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Nothing is held open between items; archives copied from the object store are removed."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._archives.clear()
