"""A folder's files as a sync sees them: path -> sha256 of each image file, walked with the folder
ingest's planning and safety checks (indexer/sources/plan.py: under FOLDER_ROOTS, links never followed
out of the root)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from indexer.settings import Settings
from indexer.sources.items import FolderItem, RejectedItem
from indexer.sources.plan import HEAD_BYTES, plan_folder, reject_reason

READ_BLOCK = 1024 * 1024


@dataclass
class FolderFiles:
    folder: str  # the folder, resolved: image sources below it start with this path and "/"
    root: str  # the FOLDER_ROOTS entry it lies under
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    refused: list[RejectedItem] = field(default_factory=list)  # unreadable, links out of the root...
    skipped: int = 0  # files that are not images (empty, or an unknown format): not indexed, not failed


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


def folder_files(folder: str, settings: Settings) -> FolderFiles:
    """Walk and hash the folder (Forbidden, InvalidInput or NotFound when it may not be used)."""
    items = plan_folder(folder, settings)
    real = str(Path(folder).resolve())
    roots = {item.root for item in items if isinstance(item, FolderItem)}
    out = FolderFiles(real, roots.pop() if roots else real)
    for item in items:
        if isinstance(item, RejectedItem):
            out.refused.append(item)
            continue
        if not isinstance(item, FolderItem):
            continue
        sha, why = _digest(Path(item.path))
        if sha is not None:
            out.files[item.path] = sha
        elif why:
            out.refused.append(RejectedItem(name=item.path, reason=why))
        else:
            out.skipped += 1
    return out
