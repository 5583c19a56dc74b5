"""Weaviate's part of a backup, through its own backup API (the backup-filesystem module for a directory,
backup-s3 for a bucket): every class, with objects and vectors, written by the server itself while it
keeps serving reads and writes."""

from __future__ import annotations

import time
from collections.abc import Callable

import weaviate
from weaviate.backup.backup import BackupStatus, BackupStatusReturn

from indexer.backup.manifest import WeaviateClass
from indexer.backup.target import BackupTarget
from indexer.errors import Conflict

POLL_S = 0.5
DONE = {BackupStatus.SUCCESS, BackupStatus.FAILED, BackupStatus.CANCELED}


class WeaviateBackupFailed(RuntimeError):
    """Weaviate reported the backup or restore failed, or it did not end in time."""


def server_version(client: weaviate.WeaviateClient) -> str:
    return str(client.get_meta().get("version", ""))


def class_counts(client: weaviate.WeaviateClient) -> list[WeaviateClass]:
    """Every Weaviate class with its object count."""
    counts = []
    for name in sorted(client.collections.list_all(simple=True)):
        total = client.collections.use(name).aggregate.over_all(total_count=True).total_count or 0
        counts.append(WeaviateClass(name=name, objects=int(total)))
    return counts


def _wait(status: Callable[[], BackupStatusReturn], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        current = status()
        if current.status == BackupStatus.SUCCESS:
            return
        if current.status in DONE:
            raise WeaviateBackupFailed(f"Weaviate's {what} ended {current.status.value}: {current.error}")
        if time.monotonic() > deadline:
            raise WeaviateBackupFailed(f"Weaviate's {what} did not end within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def create(client: weaviate.WeaviateClient, target: BackupTarget, backup_id: str, timeout_s: float) -> None:
    """Back up every class into the target; returns when Weaviate says it is done."""
    backend, location = target.weaviate_location(backup_id)
    client.backup.create(backup_id=backup_id, backend=backend, backup_location=location)
    _wait(
        lambda: client.backup.get_create_status(backup_id, backend, backup_location=location),
        "backup",
        timeout_s,
    )


def clear_for_restore(client: weaviate.WeaviateClient, classes: list[str]) -> list[str]:
    """Drop the classes of the backup that exist here empty (the schema a fresh service creates at
    start-up), so that Weaviate can restore them; Conflict when one holds objects: a restore goes into an
    empty stack and never overwrites data. The classes dropped."""
    present = set(client.collections.list_all(simple=True))
    wanted = [name for name in classes if name in present]
    busy = {}
    for name in wanted:
        total = client.collections.use(name).aggregate.over_all(total_count=True).total_count or 0
        if total:
            busy[name] = int(total)
    if busy:
        raise Conflict(
            "a restore needs an empty stack: these Weaviate classes hold objects already",
            {"classes": busy},
        )
    for name in wanted:
        client.collections.delete(name)
    return wanted


def restore(client: weaviate.WeaviateClient, target: BackupTarget, backup_id: str, timeout_s: float) -> None:
    backend, location = target.weaviate_location(backup_id)
    client.backup.restore(backup_id=backup_id, backend=backend, backup_location=location)
    _wait(
        lambda: client.backup.get_restore_status(backup_id, backend, backup_location=location),
        "restore",
        timeout_s,
    )
