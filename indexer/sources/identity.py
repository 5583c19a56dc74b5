"""What the service sees at a path under FOLDER_ROOTS: its real path and file identity (inode, size,
change and modification times in ns).

A client on the service's own machine (or one that shares its disk) compares this with its own stat of
the same path: when they match, the service reads the very files the client would upload, so the client
can register the folder (POST /collections/<c>/folder) instead of sending its bytes (clipsearch index).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from indexer.errors import Forbidden, InvalidInput, NotFound
from indexer.settings import Settings


class PathIdentity(BaseModel):
    path: str
    root: str
    is_dir: bool
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


def identity_of(path: Path) -> tuple[bool, int, int, int, int]:
    """(is_dir, inode, size, mtime_ns, ctime_ns) of `path`, links followed: what both sides compare."""
    st = path.stat()
    return path.is_dir(), st.st_ino, st.st_size if not path.is_dir() else 0, st.st_mtime_ns, st.st_ctime_ns


def path_identity(path: str, settings: Settings) -> PathIdentity:
    """The identity of `path` (absolute) if it lies under one of FOLDER_ROOTS; Forbidden when server-side
    folders are off or it lies outside them, NotFound when it is not there."""
    if not settings.folder_roots:
        raise Forbidden("server-side folders are disabled: set FOLDER_ROOTS to the directories to allow")
    if "\x00" in path or not os.path.isabs(path):
        raise InvalidInput(f"not an absolute path: {path!r}", {"reason": "relative_path"})
    try:
        real = Path(path).resolve(strict=True)
        is_dir, inode, size, mtime_ns, ctime_ns = identity_of(real)
    except FileNotFoundError as exc:
        raise NotFound(f"no such file or directory: {path}") from exc
    except (RuntimeError, OSError, ValueError) as exc:
        raise InvalidInput(f"cannot use {path!r}: {exc}", {"reason": "unresolvable_path"}) from exc
    for root in (r.resolve() for r in settings.folder_roots):
        if real == root or real.is_relative_to(root):
            return PathIdentity(
                path=str(real),
                root=str(root),
                is_dir=is_dir,
                inode=inode,
                size=size,
                mtime_ns=mtime_ns,
                ctime_ns=ctime_ns,
            )
    raise Forbidden(f"{path} is not under an allowed folder root")
