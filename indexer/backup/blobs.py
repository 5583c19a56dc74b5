"""Copy a whole blob store (originals, thumbnails, uploaded class examples) to a backup and back."""

from __future__ import annotations

import itertools
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from indexer.backup.listing import iter_keys
from indexer.storage.objectstore import ObjectMissing, ObjectStore

COPY_THREADS = 8  # S3 round trips overlap; a local copy is disk-bound either way
COPY_BATCH = 1000


@dataclass
class CopyCount:
    files: int = 0
    bytes: int = 0
    vanished: int = 0  # listed, then gone before it was read (deleted by the blob collector meanwhile)


def _copy_one(source: ObjectStore, dest: ObjectStore, key: str, scratch: Path) -> int | None:
    """Copy one object through a local file; its size, or None when it vanished."""
    local = source.local_root
    if local is not None:
        path = local / key
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        dest.put_file(key, path)
        return size
    with tempfile.NamedTemporaryFile(dir=scratch) as tmp:
        try:
            source.download(key, Path(tmp.name))
        except ObjectMissing:
            return None
        dest.put_file(key, Path(tmp.name))
        return Path(tmp.name).stat().st_size


def copy_store(source: ObjectStore, dest: ObjectStore) -> CopyCount:
    """Copy every object of ``source`` to the same key in ``dest`` (a key already there is kept: blob keys
    are content hashes), COPY_BATCH keys at a time so that memory does not grow with the store."""
    count = CopyCount()
    keys = iter_keys(source)
    with (
        tempfile.TemporaryDirectory(prefix="clipsearch-backup-") as scratch,
        ThreadPoolExecutor(COPY_THREADS) as pool,
    ):
        while batch := list(itertools.islice(keys, COPY_BATCH)):
            for size in pool.map(lambda key: _copy_one(source, dest, key, Path(scratch)), batch):
                if size is None:
                    count.vanished += 1
                else:
                    count.files += 1
                    count.bytes += size
    return count
