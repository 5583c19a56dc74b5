"""An object of the object store read as a seekable file, by ranged reads (S3 GetObject with Range).

A chunk task reads a staged zip's directory record and its entries' bytes this way, so each task
transfers about the bytes of its own entries instead of downloading the whole archive again (issue 23:
a 512 MB archive of 10,000 entries read by 1,250 tasks of 8 entries meant some 600 GB). Small reads
(headers, directory records) go through a small buffer, so they cost one request per buffer, not per
read.
"""

from __future__ import annotations

import io
from typing import BinaryIO, cast

from indexer.storage.objectstore import ObjectStore

BUFFER_BYTES = 4 * 1024


class _RangedObject(io.RawIOBase):
    def __init__(self, store: ObjectStore, key: str, size: int) -> None:
        self.store, self.key, self.length = store, key, size
        self.pos = 0
        self.transferred = 0  # bytes fetched so far (for the measurements and the tests)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence]
        target = base + offset
        if target < 0:
            raise ValueError("negative seek position")
        self.pos = target
        return self.pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        want = min(len(buffer), self.length - self.pos)
        if want <= 0:
            return 0
        data = self.store.get_range(self.key, self.pos, want)
        n = len(data)
        memoryview(buffer)[:n] = data
        self.pos += n
        self.transferred += n
        return n


def open_ranged(store: ObjectStore, key: str) -> tuple[BinaryIO, int]:
    """A buffered, seekable reader of the object (ObjectMissing when there is none) and its size."""
    size = store.size(key)
    return cast(BinaryIO, io.BufferedReader(_RangedObject(store, key, size), BUFFER_BYTES)), size
