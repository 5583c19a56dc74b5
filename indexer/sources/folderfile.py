"""Reading a file of a server-side folder without following links or blocking on special files.

Planning checks each file once (indexer/sources/plan.py); between that and the worker's read, anything
below the root may change. So the worker opens the file component by component from a descriptor of
the root, each with O_NOFOLLOW (a component swapped for a symbolic link fails, it is never followed out
of the root), and O_NONBLOCK (a named pipe opens without waiting for a writer), then checks what it
opened with fstat: a regular file, under the byte cap, or the item fails with the reason.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePath

from indexer.errors import InvalidInput, PayloadTooLarge

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_CHUNK = 1024 * 1024


def not_regular(mode: int) -> str | None:
    """Why a file of this mode cannot be read as an image, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a named pipe"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a directory"
        if stat.S_ISDIR(mode)
        else "not a regular file"
    )
    return f"not a regular file ({kind})"


def too_large(size: int, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"file is {size} bytes, over the limit of {max_bytes} (MAX_UPLOAD_BYTES)",
        {"reason": "file_too_large", "bytes": size, "limit": max_bytes},
    )


def _parts(root: Path, path: Path) -> tuple[str, ...]:
    try:
        parts = PurePath(path).relative_to(root).parts
    except ValueError as exc:
        raise InvalidInput("folder file lies outside its root") from exc
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise InvalidInput("folder file lies outside its root")
    return parts


def read_folder_file(root: Path, path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path`` (below ``root``, both as planned), read without following any link below
    the root; a file that is no longer a regular file, or is over ``max_bytes``, fails with the reason."""
    parts = _parts(root, path)
    fds: list[int] = []
    try:
        try:
            fds.append(os.open(root, _DIR_FLAGS))
            for part in parts[:-1]:
                fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fds[-1])
        except FileNotFoundError as exc:
            raise InvalidInput("file disappeared before it could be read") from exc
        except OSError as exc:  # ELOOP / ENOTDIR: a component became a symbolic link
            raise InvalidInput(
                f"cannot read file: {exc.strerror} (a path component changed into a link or "
                "something that is not a directory since planning?)"
            ) from exc
        fds.append(fd)
        st = os.fstat(fd)
        if why := not_regular(st.st_mode):
            raise InvalidInput(why)
        if st.st_size > max_bytes:
            raise too_large(st.st_size, max_bytes)
        os.set_blocking(fd, True)
        out = bytearray()
        while chunk := os.read(fd, min(_READ_CHUNK, max_bytes + 1 - len(out))):
            out += chunk
            if len(out) > max_bytes:  # it grew since fstat
                raise too_large(len(out), max_bytes)
        return bytes(out)
    except OSError as exc:
        raise InvalidInput(f"cannot read file: {exc.strerror or exc}") from exc
    finally:
        for fd in reversed(fds):
            os.close(fd)
