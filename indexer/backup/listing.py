"""The keys of an object store below a prefix (the ObjectStore interface reads and writes single keys;
a backup copies all of them)."""

from __future__ import annotations

from collections.abc import Iterator

from indexer.storage.objectstore import ObjectStore, S3ObjectStore

TEMPORARY = ".tmp-"  # LocalObjectStore's file being written (renamed into place when whole)


def iter_keys(store: ObjectStore, prefix: str = "") -> Iterator[str]:
    """Every key below ``prefix`` ("": the whole store), relative to the store, in no set order."""
    root = store.local_root
    if root is not None:
        top = root / prefix if prefix else root
        if not top.is_dir():
            return
        for path in top.rglob("*"):
            if path.is_file() and not path.name.startswith(TEMPORARY):
                yield path.relative_to(root).as_posix()
        return
    if not isinstance(store, S3ObjectStore):
        raise TypeError(f"cannot list the keys of {type(store).__name__}")
    base = f"{store.prefix}/" if store.prefix else ""
    start = f"{base}{prefix}/" if prefix else base
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=start):
        for obj in page.get("Contents", []):
            yield obj["Key"][len(base) :]


def child_names(store: ObjectStore) -> list[str]:
    """The names of the top-level "directories" of a store (a target's backup ids)."""
    root = store.local_root
    if root is not None:
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not isinstance(store, S3ObjectStore):
        raise TypeError(f"cannot list the keys of {type(store).__name__}")
    base = f"{store.prefix}/" if store.prefix else ""
    names: set[str] = set()
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=base, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            names.add(common["Prefix"][len(base) :].rstrip("/"))
    return sorted(names)
