"""Where images come from: uploads staged on disk, zip archives, server-side folders and URLs.

Planning turns a source into items (small JSON-able dicts that reference the bytes, never carry them),
and refuses what is unsafe before any work is queued. `ItemReader` later reads one item's bytes.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

from indexer.blobs import BlobStore
from indexer.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge
from indexer.images import sniff_format
from indexer.settings import Settings
from indexer.url_fetch import check_url, fetch_url

Item = dict[str, Any]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
HEAD_BYTES = 16


def reject_reason(head: bytes, size: int) -> str | None:
    """Why bytes cannot be an image (an empty file, an unknown format), or None if they may be one."""
    if size == 0:
        return "empty file (0 bytes)"
    if sniff_format(head) is None:
        return "not an image: unrecognised format (JPEG, PNG, WebP, BMP, TIFF and GIF are accepted)"
    return None


def rejected(name: str, reason: str) -> Item:
    return {"kind": "rejected", "name": name, "reason": reason}


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
    return {"kind": "file", "path": str(path), "name": display}


def _unsafe_member(name: str) -> bool:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    return ".." in re.split(r"[\\/]", name)


def plan_zip(path: Path, display: str, settings: Settings) -> list[Item]:
    """Items for each file of a zip archive. A bomb refuses the whole archive; unsafe entries are refused."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{display} is not a valid zip archive: {exc}") from exc
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
    if len(infos) > settings.zip_max_entries:
        raise PayloadTooLarge(
            f"{display} has {len(infos)} entries, over the limit of {settings.zip_max_entries}"
        )
    total = sum(info.file_size for info in infos)
    if total > settings.zip_max_total_bytes:
        raise PayloadTooLarge(
            f"{display} would expand to {total} bytes, over the limit of {settings.zip_max_total_bytes} "
            "(zip bomb?)"
        )
    items: list[Item] = []
    for info in infos:
        name = f"{display}:{info.filename}"
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > settings.zip_max_ratio:
            raise PayloadTooLarge(
                f"{display}: entry {info.filename!r} expands {ratio:.0f}-fold, over the limit of "
                f"{settings.zip_max_ratio:.0f} (zip bomb?)"
            )
        if _unsafe_member(info.filename):
            items.append(rejected(name, "unsafe path in archive (absolute or '..': zip-slip)"))
        elif info.flag_bits & 0x1:
            items.append(rejected(name, "encrypted archive entry"))
        elif stat.S_ISLNK(info.external_attr >> 16):
            items.append(rejected(name, "symbolic link in archive"))
        elif info.file_size == 0:
            items.append(rejected(name, "empty file (0 bytes)"))
        else:
            items.append({"kind": "zip", "path": str(path), "entry": info.filename, "name": name})
    return items


def _root_for(real: Path, roots: list[Path]) -> Path | None:
    for root in roots:
        resolved = root.resolve()
        if real == resolved or real.is_relative_to(resolved):
            return resolved
    return None


def plan_folder(folder: str, settings: Settings) -> list[Item]:
    """Every file below `folder`, which must lie under an allow-listed root; no symlink leaves the root."""
    if not settings.folder_roots:
        raise Forbidden("server-side folders are disabled: set FOLDER_ROOTS to the directories to allow")
    real = Path(folder).resolve()
    root = _root_for(real, settings.folder_roots)
    if root is None:
        allowed = ", ".join(str(r) for r in settings.folder_roots)
        raise Forbidden(f"{folder} is not under an allowed folder root ({allowed})")
    if not real.is_dir():
        raise NotFound(f"no such directory: {folder}")
    items: list[Item] = []
    for dirpath, dirnames, filenames in os.walk(real, followlinks=False):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.is_symlink() and _root_for(path.resolve(), [root]) is None:
                items.append(rejected(str(path), "symbolic link that points outside the allowed root"))
                continue
            items.append({"kind": "folder", "path": str(path), "root": str(root), "name": str(path)})
    return items


def plan_urls(urls: list[str], settings: Settings) -> list[Item]:
    items: list[Item] = []
    for url in urls:
        try:
            check_url(url, settings.url_allow)
        except InvalidInput as exc:
            items.append(rejected(url, exc.message))
            continue
        items.append({"kind": "url", "url": url, "name": url})
    return items


class ItemReader:
    """Reads items' bytes for one chunk, keeping zip archives open between entries."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._archives: dict[str, zipfile.ZipFile] = {}

    def read(self, item: Item) -> bytes:
        kind = item["kind"]
        if kind == "rejected":
            raise InvalidInput(item["reason"])
        if kind == "url":
            return fetch_url(
                item["url"],
                allow=self.settings.url_allow,
                max_bytes=self.settings.url_max_bytes,
                timeout_s=self.settings.url_timeout_s,
                max_redirects=self.settings.url_max_redirects,
            )
        if kind == "zip":
            return self._read_zip(item)
        if kind == "stored":  # re-embedding: the original kept at ingest
            original = BlobStore(self.settings.blob_dir).original_path(item["sha256"])
            if not original.is_file():
                raise InvalidInput("the original is missing from the blob store")
            return original.read_bytes()
        path = Path(item["path"])
        if kind == "folder" and _root_for(path.resolve(), [Path(item["root"])]) is None:
            raise Forbidden("file now resolves outside the allowed root")
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise InvalidInput("file disappeared before it could be read") from exc
        except OSError as exc:
            raise InvalidInput(f"cannot read file: {exc.strerror}") from exc

    def _read_zip(self, item: Item) -> bytes:
        archive = self._archives.get(item["path"])
        if archive is None:
            archive = self._archives[item["path"]] = zipfile.ZipFile(item["path"])
        info = archive.getinfo(item["entry"])
        limit = info.file_size
        try:
            with archive.open(info) as entry:
                data = entry.read(limit + 1)
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            raise InvalidInput(f"cannot read archive entry: {exc}") from exc
        if len(data) > limit:
            raise PayloadTooLarge("archive entry is larger than its declared size")
        return data

    def close(self) -> None:
        for archive in self._archives.values():
            archive.close()
        self._archives.clear()
