"""Where images come from: uploads staged on disk, zip archives, server-side folders and URLs.

Planning turns a source into job items (indexer/sources/items.py: one pydantic model per kind, which reference
the bytes, never carry them), and refuses what is unsafe before any work is queued. `ItemReader` later
reads one checked item's bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from indexer.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge
from indexer.media.decode import sniff_format
from indexer.settings import Settings
from indexer.sources import ziparchive
from indexer.sources.folderfile import not_regular, read_folder_file, too_large
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
    resolve_path,
)
from indexer.sources.urls import UrlTimeout, fetch_url, parse_url, resolve, vet
from indexer.sources.ziparchive import Entry
from indexer.storage.blobs import BlobStore
from indexer.storage.objectstore import ObjectMissing, ObjectStore, staging_store
from indexer.storage.ranged import open_ranged

Item = JobItem  # the planned items of an ingest or re-embed job
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
HEAD_BYTES = 16


def reject_reason(head: bytes, size: int) -> str | None:
    """Why bytes cannot be an image (an empty file, an unknown format), or None if they may be one."""
    if size == 0:
        return "empty file (0 bytes)"
    if sniff_format(head) is None:
        return (
            "not an image: unrecognised format (JPEG, PNG, WebP, BMP, TIFF, GIF, HEIC/HEIF, AVIF, "
            "JPEG XL and camera RAW are accepted)"
        )
    return None


def rejected(name: str, reason: str) -> RejectedItem:
    return RejectedItem(name=name, reason=reason)


def stage_upload(staging: Path, index: int, filename: str, stream: IO[bytes]) -> Item:
    """Copy one uploaded file to the staging directory; refuse empty and non-image files at once."""
    display = filename or f"upload-{index}"
    safe = _SAFE_NAME.sub("_", PurePosixPath(display.replace("\\", "/")).name)[:100] or "file"
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / f"{index:06d}-{safe}"
    size = 0
    head = b""
    with path.open("wb") as out:
        while chunk := stream.read(1024 * 1024):
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            size += len(chunk)
            out.write(chunk)
    reason = reject_reason(head, size)
    if reason:
        path.unlink()
        return rejected(display, reason)
    return FileItem(path=str(path), name=display)


def _safe_name(display: str) -> str:
    return _SAFE_NAME.sub("_", PurePosixPath(display.replace("\\", "/")).name)[:100] or "file"


def stage_upload_object(
    store: ObjectStore, prefix: str, index: int, filename: str, stream: IO[bytes]
) -> Item:
    """Stage one uploaded file in the object store (BLOB_STORE_URL), under ``prefix`` (the job's id): a
    worker on another machine reads it from there. Empty and non-image files are refused at once."""
    display = filename or f"upload-{index}"
    key = f"{prefix}/{index:06d}-{_safe_name(display)}"
    size, head = store.put_stream(key, stream, HEAD_BYTES)
    reason = reject_reason(head, size)
    if reason:
        store.delete(key)
        return rejected(display, reason)
    return StagedItem(key=key, name=display)


def stage_spooled(staging: Path, index: int, filename: str, stream: IO[bytes], spooled: Path) -> Item:
    """Stage an upload that the transport already wrote to ``spooled`` (a file in the staging area's
    file system, which ``stream`` writes to): a rename, the bytes are not copied. Empty and non-image
    files are refused at once (their spool file is the transport's to remove)."""
    display = filename or f"upload-{index}"
    stream.flush()
    size = os.fstat(stream.fileno()).st_size
    stream.seek(0)
    reason = reject_reason(stream.read(HEAD_BYTES), size)
    if reason:
        return rejected(display, reason)
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / f"{index:06d}-{_safe_name(display)}"
    os.replace(spooled, path)
    return FileItem(path=str(path), name=display)


def stage(
    settings: Settings,
    job_id: str,
    sub: str | None,
    index: int,
    filename: str,
    stream: IO[bytes],
    spooled: Path | None = None,
) -> Item:
    """Stage one upload where this deployment's workers read it: DATA_DIR/staging/<job>[/<sub>] on one
    machine, the object store's staging/<job>[/<sub>]/ when BLOB_STORE_URL is set. An upload already
    ``spooled`` to a file of the local staging area is renamed into place, not copied."""
    if settings.blob_store_url:
        prefix = f"{job_id}/{sub}" if sub else job_id
        return stage_upload_object(staging_store(settings), prefix, index, filename, stream)
    staging = settings.staging_dir / job_id
    if spooled is not None:
        return stage_spooled(staging / sub if sub else staging, index, filename, stream, spooled)
    return stage_upload(staging / sub if sub else staging, index, filename, stream)


def stage_zip_items(settings: Settings, job_id: str, path: Path, items: list[Item]) -> list[Item]:
    """With an object store, move a planned archive there and point its items at it (``staged_zip``);
    on one machine the items keep reading the archive from DATA_DIR/staging."""
    if not settings.blob_store_url:
        return items
    key = f"{job_id}/archive.zip"
    staging_store(settings).put_file(key, path)
    shutil.rmtree(path.parent, ignore_errors=True)
    staged: list[Item] = []
    for item in items:
        staged.append(item.staged(key) if isinstance(item, ZipItem) else item)
    return staged


def _unsafe_member(name: str) -> bool:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    return ".." in re.split(r"[\\/]", name)


def _zip_problem(entry: Entry, settings: Settings) -> str | None:
    """Why one archive entry is refused (the archive as a whole may still be used)."""
    if entry.problem:
        return entry.problem
    if _unsafe_member(entry.name):
        return "unsafe path in archive (absolute or '..': zip-slip)"
    if "\x00" in entry.name:
        return "entry name contains a NUL byte"
    if stat.S_ISLNK(entry.external_attr >> 16):
        return "symbolic link in archive"
    if entry.file_size == 0:
        return "empty file (0 bytes)"
    if entry.file_size > settings.zip_max_entry_bytes:
        return f"entry expands to {entry.file_size} bytes, over the limit of {settings.zip_max_entry_bytes}"
    return None


def plan_zip(path: Path, display: str, settings: Settings) -> list[Item]:
    """Items for each file of a zip archive. A bomb refuses the whole archive; unsafe entries are refused.

    The entry count and the central directory's size come from the end-of-central-directory record and
    are capped before one directory record is parsed (`indexer.sources.ziparchive`)."""
    try:
        with path.open("rb") as f:
            directory = ziparchive.read_directory(f, path.stat().st_size, display)
            ziparchive.check_directory(
                directory,
                display,
                max_entries=settings.zip_max_entries,
                max_directory_bytes=settings.zip_max_directory_bytes,
            )
            entries = ziparchive.iter_entries(f, directory, display)
    except OSError as exc:
        raise InvalidInput(f"{display} is not a valid zip archive: {exc.strerror or exc}") from exc
    total = sum(entry.file_size for entry in entries)
    if total > settings.zip_max_total_bytes:
        raise PayloadTooLarge(
            f"{display} would expand to {total} bytes, over the limit of {settings.zip_max_total_bytes} "
            "(zip bomb?)",
            {"reason": "zip_too_large", "bytes": total, "limit": settings.zip_max_total_bytes},
        )
    items: list[Item] = []
    for entry in entries:
        if entry.is_dir:
            continue
        name = f"{display}:{entry.name}"
        ratio = entry.file_size / max(entry.compress_size, 1)
        if ratio > settings.zip_max_ratio and not entry.problem:
            raise PayloadTooLarge(
                f"{display}: entry {entry.name!r} expands {ratio:.0f}-fold, over the limit of "
                f"{settings.zip_max_ratio:.0f} (zip bomb?)",
                {"reason": "zip_ratio", "entry": entry.name, "limit": settings.zip_max_ratio},
            )
        problem = _zip_problem(entry, settings)
        if problem:
            items.append(rejected(name, problem))
        else:
            items.append(ZipItem(path=str(path), entry=entry.name, record=entry.record_offset, name=name))
    return items


def _root_for(real: Path, roots: list[Path]) -> Path | None:
    for root in roots:
        resolved = root.resolve()
        if real == resolved or real.is_relative_to(resolved):
            return resolved
    return None


def plan_folder(folder: str, settings: Settings) -> list[Item]:
    """Every file below `folder`, which must lie under an allow-listed root.

    Links are never followed out of the root: a file link that resolves outside it, a dangling link and
    a link loop are each refused with the reason; a linked directory is not walked (reported once)."""
    if not settings.folder_roots:
        raise Forbidden("server-side folders are disabled: set FOLDER_ROOTS to the directories to allow")
    if "\x00" in folder:
        raise InvalidInput("invalid folder path: it contains a NUL byte", {"reason": "nul_in_path"})
    if not os.path.isabs(folder):
        raise InvalidInput(f"folder path must be absolute: {folder!r}", {"reason": "relative_path"})
    try:
        real = Path(folder).resolve()
    except (RuntimeError, OSError, ValueError) as exc:  # a symlink loop (RuntimeError before 3.13)
        raise InvalidInput(
            f"cannot use folder {folder!r}: symbolic link loop or unresolvable path ({exc})",
            {"reason": "unresolvable_path"},
        ) from exc
    root = _root_for(real, settings.folder_roots)
    if root is None:
        allowed = ", ".join(str(r) for r in settings.folder_roots)
        raise Forbidden(f"{folder} is not under an allowed folder root ({allowed})")
    if not real.is_dir():
        raise NotFound(f"no such directory: {folder}")
    items: list[Item] = []
    limit = settings.folder_max_files

    def add(item: Item) -> None:
        items.append(item)
        if len(items) > limit:
            raise PayloadTooLarge(
                f"{folder} holds more than {limit} files (FOLDER_MAX_FILES)",
                {"reason": "folder_too_large", "limit": limit},
            )

    def walk_error(exc: OSError) -> None:
        add(rejected(str(exc.filename or folder), f"cannot read directory: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(real, onerror=walk_error, followlinks=False):
        dirnames.sort()
        for dirname in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            dirnames.remove(dirname)
            add(rejected(str(Path(dirpath) / dirname), "symbolic link to a directory (not followed)"))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            target = path
            if path.is_symlink():
                resolved, why = resolve_path(path)
                if resolved is None:
                    add(rejected(str(path), why))
                    continue
                if _root_for(resolved, [root]) is None:
                    add(rejected(str(path), "symbolic link that points outside the allowed root"))
                    continue
                target = resolved  # the worker opens the target itself, following no link
            if problem := _folder_file_problem(target, settings):
                add(rejected(str(path), problem))
                continue
            add(FolderItem(path=str(target), root=str(root), name=str(path)))
    return items


def _folder_file_problem(path: Path, settings: Settings) -> str | None:
    """Why a folder's file is refused at planning: not a regular file (a named pipe would block its
    reader) or over the per-file byte cap (MAX_UPLOAD_BYTES). The worker checks both again on what it
    opens (indexer/sources/folderfile.py)."""
    try:
        st = path.lstat()
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    if why := not_regular(st.st_mode):
        return why
    if st.st_size > settings.max_upload_bytes:
        return too_large(st.st_size, settings.max_upload_bytes).message
    return None


def plan_urls(urls: list[str], settings: Settings) -> list[Item]:
    """Refuse malformed URLs and those whose host resolves to a refused address, before queueing.

    Each host is resolved once, and all resolving shares one URL_TIMEOUT_S budget; a URL whose host
    could not be resolved within it is queued anyway, since the worker parses, resolves and vets every URL
    again (and pins the connection to the vetted address) when it downloads it.
    """
    items: list[Item] = []
    deadline = time.monotonic() + settings.url_timeout_s
    resolved: dict[tuple[str, int], list[str] | InvalidInput | None] = {}  # None: not resolved in time
    for url in urls:
        name = url if len(url) <= 300 else url[:300] + "..."
        try:
            target = parse_url(url, settings.url_max_length)
            key = (target.host, target.port)
            if key not in resolved:
                try:
                    resolved[key] = resolve(target, deadline)
                except UrlTimeout:
                    resolved[key] = None
                except InvalidInput as exc:
                    resolved[key] = exc
            addresses = resolved[key]
            if isinstance(addresses, InvalidInput):
                raise addresses
            if addresses is not None:
                vet(target, addresses, settings.url_allow)
        except InvalidInput as exc:
            items.append(rejected(name, exc.message))
            continue
        items.append(UrlItem(url=url, name=url))
    return items


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
            problem = _zip_problem(entry, self.settings)
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
