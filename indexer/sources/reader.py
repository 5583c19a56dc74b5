"""The worker's reader: the bytes of one checked job item, whatever its source."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from indexer.errors import InvalidInput
from indexer.settings import Settings
from indexer.sources import ziparchive
from indexer.sources.folderfile import read_folder_file
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
from indexer.storage.ranged import open_ranged
from indexer.storage.staging import staging_store


class ItemReader:
    """Reads items' bytes for one chunk. Items come checked (`indexer.sources.items.check_item`, as the worker
    reads them from Redis), so the reader only dispatches on their type."""

    def __init__(self, settings: Settings, job_id: str | None = None) -> None:
        self.settings = settings
        self.job_id = job_id
        # staged_zip: archives in the object store, read by ranged reads (never downloaded whole),
        # each opened once per reader with its directory record read once
        self._archives: dict[str, tuple[BinaryIO, ziparchive.Directory]] = {}

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
                return self._read_local_zip(item, Path(item.path))
            case StagedItem():
                try:
                    return staging_store(self.settings).get_bytes(item.key)
                except ObjectMissing as exc:
                    raise InvalidInput("file disappeared before it could be read") from exc
            case StagedZipItem():
                try:
                    return self._read_zip(item, *self._archive(item.key))
                except ObjectMissing as exc:
                    raise InvalidInput("archive disappeared before it could be read") from exc
            case StoredItem():  # re-embedding: the original kept at ingest
                return BlobStore.from_settings(self.settings).read_original(item.sha256)
            case FolderItem():
                return read_folder_file(Path(item.root), Path(item.path), self.settings.max_upload_bytes)
            case FileItem():
                try:
                    return Path(item.path).read_bytes()
                except FileNotFoundError as exc:
                    raise InvalidInput("file disappeared before it could be read") from exc
                except OSError as exc:
                    raise InvalidInput(f"cannot read file: {exc.strerror}") from exc

    def _archive(self, key: str) -> tuple[BinaryIO, ziparchive.Directory]:
        """A staged archive opened for ranged reads, with its directory record, once per reader."""
        opened = self._archives.get(key)
        if opened is None:
            f, size = open_ranged(staging_store(self.settings), key)
            try:
                opened = f, ziparchive.read_directory(f, size)
            except BaseException:
                f.close()
                raise
            self._archives[key] = opened
        return opened

    def _read_local_zip(self, item: ZipItem, path: Path) -> bytes:
        try:
            with path.open("rb") as f:
                return self._read_zip(item, f, ziparchive.read_directory(f, os.fstat(f.fileno()).st_size))
        except FileNotFoundError as exc:
            raise InvalidInput("archive disappeared before it could be read") from exc
        except OSError as exc:
            raise InvalidInput(f"cannot read archive: {exc.strerror or exc}") from exc

    def _read_zip(self, item: ZipItem | StagedZipItem, f: BinaryIO, directory: ziparchive.Directory) -> bytes:
        """The entry whose directory record planning found at `record`: only this entry's damage
        (a corrupt stream, a CRC mismatch) fails it, never the chunk."""
        try:
            entry = ziparchive.entry_at(f, directory, item.record)
            if entry.name != item.entry:
                raise InvalidInput("malformed job item: the entry at that offset has another name")
            problem = zip_problem(entry, self.settings)
            if problem:
                raise InvalidInput(problem)
            return ziparchive.read_entry(f, entry, self.settings.zip_max_entry_bytes)
        except OSError as exc:
            raise InvalidInput(f"cannot read archive: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Archives opened from the object store are closed; nothing else is held between items."""
        for f, _ in self._archives.values():
            f.close()
        self._archives.clear()
