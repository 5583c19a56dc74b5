"""Upload staging in one place: where a request's or job's uploaded bytes wait until the job's workers
have read them (DATA_DIR/staging/<job> on one machine, the object store's staging/<job>/ when
BLOB_STORE_URL is set), refused up front when empty or not an image, and removed when the job ends or
the request fails."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from indexer.errors import InvalidInput, UnsupportedMediaType
from indexer.media.decode import check_content_type
from indexer.media.formats import sniff_format
from indexer.settings import Settings
from indexer.sources.items import MAX_ITEM_TEXT, FileItem, JobItem, StagedItem, ZipItem, rejected
from indexer.storage.objectstore import LocalObjectStore, ObjectStore, open_store

Item = JobItem
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


def stage_upload(staging: Path, index: int, filename: str, stream: IO[bytes]) -> Item:
    """Copy one uploaded file to the staging directory; refuse empty and non-image files at once."""
    display = filename or f"upload-{index}"
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / f"{index:06d}-{_safe_name(display)}"
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


@dataclass(frozen=True)
class Upload:
    """One uploaded file as the transport received it. ``spooled``: the file on disk that ``stream``
    writes to, when the transport spooled it inside the local staging area (staged by a rename)."""

    filename: str
    content_type: str | None
    stream: IO[bytes]
    spooled: Path | None = None


def stage_uploads(settings: Settings, job_id: str, sub: str | None, files: list[Upload]) -> list[JobItem]:
    """One item per uploaded file, staged under the job (in ``sub`` when given); a refused content type is
    a rejected item with its reason."""
    items: list[JobItem] = []
    for index, upload in enumerate(files):
        shown = upload.filename or f"upload-{index}"
        if len(shown) > MAX_ITEM_TEXT:  # refused as the part comes: the caller removes what was staged
            raise InvalidInput(
                f"file part {index}: its filename has {len(shown)} characters, over the limit of "
                f"{MAX_ITEM_TEXT}",
                {"reason": "filename_too_long", "part": index, "limit": MAX_ITEM_TEXT},
            )
        try:
            check_content_type(upload.content_type or None)
        except UnsupportedMediaType as exc:
            items.append(rejected(shown, exc.message))
            continue
        items.append(stage(settings, job_id, sub, index, shown, upload.stream, upload.spooled))
    return items


def staging_store(settings: Settings) -> ObjectStore:
    """Where uploads are staged until their job's workers have read them."""
    if settings.blob_store_url:
        return open_store(settings).child("staging")
    return LocalObjectStore(settings.staging_dir)


def remove_staging(settings: Settings, job_id: str, sub: str | None = None) -> None:
    """Forget a job's staged uploads (its last chunk ran, or it never started), or those of one of its
    requests (``sub``, the request's folder, when the request failed)."""
    prefix = f"{job_id}/{sub}" if sub else job_id
    shutil.rmtree(settings.staging_dir / prefix, ignore_errors=True)
    if settings.blob_store_url:
        # best effort: an unreachable store keeps stale staging, never fails a job
        with contextlib.suppress(Exception):
            staging_store(settings).delete_prefix(prefix)
