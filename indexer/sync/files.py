"""A folder's files as a sync sees them: path -> sha256 of each image file, walked with the folder
ingest's planning and safety checks (indexer/sources/plan.py: under FOLDER_ROOTS, links never followed
out of the root).

A file is hashed again only when its stat changed since the last sync (size, mtime, ctime and inode:
`Known`, kept by the caller), so a `--watch` on a large folder re-reads only what changed; ctime cannot be
set back by a tool that restores mtime, and a rename changes it too (the renamed file is re-read, which is
cheap, and still found to be a move by its hash)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from indexer.settings import Settings
from indexer.sources.items import FolderItem, RejectedItem
from indexer.sources.plan import plan_folder
from indexer.storage.staging import HEAD_BYTES, reject_reason

READ_BLOCK = 1024 * 1024


@dataclass
class FolderFiles:
    folder: str  # the folder, resolved: image sources below it start with this path and "/"
    root: str  # the FOLDER_ROOTS entry it lies under
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    refused: list[RejectedItem] = field(default_factory=list)  # unreadable, links out of the root...
    skipped: int = 0  # files that are not images (empty, or an unknown format): not indexed, not failed
    known: dict[str, str] = field(default_factory=dict)  # path -> stat key and sha256, for the next sync
    hashed: int = 0  # files read and hashed this time (the others' stat had not changed)


def stat_key(path: Path) -> str | None:
    """What must stay the same for a file's bytes to be taken as unchanged (None: cannot stat it)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def _digest(path: Path) -> tuple[str | None, str]:
    """The file's sha256, or None and why it is not an image or cannot be read."""
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
            size = path.stat().st_size
            if reject_reason(head, size):
                return None, ""
            digest = hashlib.sha256(head)
            while block := f.read(READ_BLOCK):
                digest.update(block)
    except FileNotFoundError:
        return None, ""  # gone since the walk: as if it never was
    except OSError as exc:
        return None, f"cannot read file: {exc.strerror or exc}"
    return digest.hexdigest(), ""


def folder_files(folder: str, settings: Settings, known: Mapping[str, str] | None = None) -> FolderFiles:
    """Walk and hash the folder (Forbidden, InvalidInput or NotFound when it may not be used).
    ``known``: the previous sync's `FolderFiles.known`; a file whose stat key is unchanged is not read."""
    items = plan_folder(folder, settings)
    real = str(Path(folder).resolve())
    roots = {item.root for item in items if isinstance(item, FolderItem)}
    out = FolderFiles(real, roots.pop() if roots else real)
    known = known or {}
    for item in items:
        if isinstance(item, RejectedItem):
            out.refused.append(item)
            continue
        if not isinstance(item, FolderItem):
            continue
        key = stat_key(Path(item.path))
        before = known.get(item.path, "").rsplit(" ", 1)
        if key is not None and len(before) == 2 and before[0] == key:
            out.files[item.path] = before[1]
            out.known[item.path] = f"{key} {before[1]}"
            continue
        sha, why = _digest(Path(item.path))
        out.hashed += 1
        if sha is not None:
            out.files[item.path] = sha
            if key is not None:
                out.known[item.path] = f"{key} {sha}"
        elif why:
            out.refused.append(RejectedItem(name=item.path, reason=why))
        else:
            out.skipped += 1
    return out
