"""Planning: zip archives, server-side folders and URLs into job items (indexer/sources/items.py: one
pydantic model per kind, which reference the bytes, never carry them), refusing what is unsafe before
any work is queued. Uploads are staged by indexer/storage/staging.py; the worker's `ItemReader`
(indexer/sources/reader.py) later reads one checked item's bytes.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

from indexer.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge
from indexer.settings import Settings
from indexer.sources import ziparchive
from indexer.sources.folderfile import not_regular, too_large
from indexer.sources.items import (
    FolderItem,
    JobItem,
    UrlItem,
    ZipItem,
    rejected,
    resolve_path,
)
from indexer.sources.urls import UrlTimeout, parse_url, resolve, vet
from indexer.sources.ziparchive import Entry

Item = JobItem  # the planned items of an ingest or re-embed job


def _unsafe_member(name: str) -> bool:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    return ".." in re.split(r"[\\/]", name)


def zip_problem(entry: Entry, settings: Settings) -> str | None:
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
        problem = zip_problem(entry, settings)
        if problem:
            items.append(rejected(name, problem))
        else:
            items.append(ZipItem(path=str(path), entry=entry.name, record=entry.record_offset, name=name))
    return items


def printable(path: str) -> str:
    """A path as text: bytes of a file name that are not UTF-8 (surrogate escapes) shown as U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


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
        add(rejected(printable(str(exc.filename or folder)), f"cannot read directory: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(real, onerror=walk_error, followlinks=False):
        dirnames.sort()
        for dirname in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            dirnames.remove(dirname)
            add(
                rejected(
                    printable(str(Path(dirpath) / dirname)), "symbolic link to a directory (not followed)"
                )
            )
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            shown = printable(str(path))
            if shown != str(path):  # an item's path is JSON text: it could not name this file
                add(rejected(shown, "file name is not valid UTF-8 (rename the file to index it)"))
                continue
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
