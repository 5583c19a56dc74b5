"""The backup use cases: create a backup of the whole stack, list and read backups, restore one into an
empty stack (indexer/backup/). Routes and the CLI call this service only.

A backup or restore runs in a background thread of the process that starts it (the API), so the request
answers at once (202) and ingest goes on: Weaviate writes its backup while it serves, the blob copy reads
files that are never rewritten (content-addressed), and the workers are not involved. One backup or
restore runs at a time per stack (indexer/backup/lock.py); a backup whose manifest still says `running`
while nobody holds the lock (its process died) is reported `interrupted`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from indexer import __version__
from indexer.backup import weaviate_part
from indexer.backup.blobs import copy_store
from indexer.backup.lock import BackupLock
from indexer.backup.manifest import (
    BackupState,
    BlobPart,
    CollectionEntry,
    Manifest,
    RedisPart,
    WeaviatePart,
    check_backup_id,
    list_manifests,
    new_backup_id,
    read_manifest,
    write_manifest,
)
from indexer.backup.redis_state import REDIS_FILE, RedisSnapshot, export_ended_jobs, import_snapshot
from indexer.backup.target import BackupTarget, resolve_target
from indexer.classify.store import ClassStore, Kind
from indexer.errors import Conflict, NotFound
from indexer.services.backends import Backends
from indexer.storage.objectstore import ObjectMissing
from indexer.store.collections import list_collections

__all__ = ["BackupService", "Manifest", "RestoreStatus"]  # what the routes answer with, through this door

log = logging.getLogger(__name__)

RESTORE = "clipsearch:backup:restore:"  # + backup id: the last restore of that backup (JSON)
BLOBS = "blobs"

Runner = Callable[[Callable[[], None]], None]


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="clipsearch-backup", daemon=True).start()


class RestoreState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Restored(BaseModel):
    weaviate_objects: int = 0
    blobs: int = 0
    redis_keys: int = 0


class RestoreStatus(BaseModel):
    backup_id: str
    source: str
    state: RestoreState = RestoreState.RUNNING
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    restored: Restored = Field(default_factory=Restored)
    mismatches: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Weaviate classes whose restored object count differs from the manifest's "
        "({class: {expected, restored}}); a backup taken during ingest may count an object more or less",
    )


class BackupService:
    def __init__(self, backends: Backends, runner: Runner = _in_thread) -> None:
        self.backends = backends
        self.settings = backends.settings
        self._run = runner
        self.lock = BackupLock(backends.redis)

    # -- backups -------------------------------------------------------------------------------------
    def start(self, to: str | None = None) -> Manifest:
        """Start a backup into ``to`` (default BACKUP_URL); its manifest, `running`."""
        target = resolve_target(self.settings, to)
        backup_id = new_backup_id()
        lock = f"backup:{backup_id}"
        self.lock.acquire(lock)
        manifest = Manifest(id=backup_id, target=target.url, created_at=datetime.now(UTC))
        try:
            write_manifest(target.backup_store(backup_id), manifest)
        except BaseException:
            self.lock.release(lock)
            raise
        self._run(lambda: self._create(target, manifest, lock))
        return manifest

    def _create(self, target: BackupTarget, manifest: Manifest, lock: str) -> None:
        with self.lock.kept(lock):
            try:
                self._fill(target, manifest)
                manifest.state = BackupState.COMPLETED
            except Exception as exc:  # a background thread: whatever failed goes into the manifest, not lost
                log.exception("backup %s failed", manifest.id)
                manifest.state = BackupState.FAILED
                manifest.error = f"{exc.__class__.__name__}: {exc}"
            manifest.finished_at = datetime.now(UTC)
            write_manifest(target.backup_store(manifest.id), manifest)
        log.info("backup %s %s in %s", manifest.id, manifest.state.value, target.url)

    def _fill(self, target: BackupTarget, manifest: Manifest) -> None:
        """Weaviate first, then the blobs: every image in Weaviate's snapshot has its blobs by then."""
        client = self.backends.weaviate
        store = target.backup_store(manifest.id)
        manifest.versions = {
            "clipsearch": __version__,
            "weaviate": weaviate_part.server_version(client),
            "redis": str(self.backends.redis.info("server").get("redis_version", "")),
        }
        manifest.collections = [
            CollectionEntry(name=c.name, model_id=c.model_id, images=c.count or 0)
            for c in list_collections(client)
        ]
        classes = ClassStore(client)
        manifest.class_sets = len(classes.all(Kind.CLASS_SET))
        manifest.classifiers = len(classes.all(Kind.CLASSIFIER))
        backend, _ = target.weaviate_location(manifest.id)
        part = WeaviatePart(backend=backend.value, classes=weaviate_part.class_counts(client))
        write_manifest(store, manifest)
        weaviate_part.create(client, target, manifest.id, self.settings.backup_timeout_s)
        manifest.weaviate = part
        copied = copy_store(self.backends.blobs.store, store.child(BLOBS))
        manifest.blobs = BlobPart(files=copied.files, bytes=copied.bytes)
        snapshot = export_ended_jobs(self.backends.redis)
        store.put_bytes(REDIS_FILE, snapshot.model_dump_json().encode())
        manifest.redis = RedisPart(keys=len(snapshot.keys), jobs=len(snapshot.jobs))

    def list(self, source: str | None = None) -> list[Manifest]:
        target = resolve_target(self.settings, source)
        return [self._current(m) for m in list_manifests(target.store)]

    def get(self, backup_id: str, source: str | None = None) -> Manifest:
        target = resolve_target(self.settings, source)
        return self._current(read_manifest(target.store, backup_id))

    def _current(self, manifest: Manifest) -> Manifest:
        if manifest.state is BackupState.RUNNING and self.lock.holder() != f"backup:{manifest.id}":
            manifest.state = BackupState.INTERRUPTED
        return manifest

    # -- restore -------------------------------------------------------------------------------------
    def start_restore(self, backup_id: str, source: str | None = None) -> RestoreStatus:
        """Check that the backup is whole and this stack empty (Conflict otherwise), then restore it in
        the background; its status, `running`."""
        check_backup_id(backup_id)
        target = resolve_target(self.settings, source)
        manifest = read_manifest(target.store, backup_id)
        if manifest.state is not BackupState.COMPLETED or manifest.weaviate is None:
            raise Conflict(
                f"backup {backup_id!r} is {manifest.state.value}, not completed: it cannot be restored"
            )
        lock = f"restore:{backup_id}"
        self.lock.acquire(lock)
        status = RestoreStatus(backup_id=backup_id, source=target.url, started_at=datetime.now(UTC))
        try:
            weaviate_part.clear_for_restore(
                self.backends.weaviate, [c.name for c in manifest.weaviate.classes]
            )
            self._save(status)
        except BaseException:
            self.lock.release(lock)
            raise
        self._run(lambda: self._restore(target, manifest, status, lock))
        return status

    def _restore(self, target: BackupTarget, manifest: Manifest, status: RestoreStatus, lock: str) -> None:
        with self.lock.kept(lock):
            try:
                self._put_back(target, manifest, status)
                status.state = RestoreState.COMPLETED
            except Exception as exc:  # a background thread: whatever failed goes into the status, not lost
                log.exception("restore of backup %s failed", manifest.id)
                status.state = RestoreState.FAILED
                status.error = f"{exc.__class__.__name__}: {exc}"
            self._ensure_schema()
            status.finished_at = datetime.now(UTC)
            self._save(status)
        log.info("restore of backup %s %s", manifest.id, status.state.value)

    def _put_back(self, target: BackupTarget, manifest: Manifest, status: RestoreStatus) -> None:
        client = self.backends.weaviate
        store = target.backup_store(manifest.id)
        weaviate_part.restore(client, target, manifest.id, self.settings.backup_timeout_s)
        counts = {c.name: c.objects for c in weaviate_part.class_counts(client)}
        assert manifest.weaviate is not None
        status.restored.weaviate_objects = sum(counts.get(c.name, 0) for c in manifest.weaviate.classes)
        status.mismatches = {
            c.name: {"expected": c.objects, "restored": counts.get(c.name, 0)}
            for c in manifest.weaviate.classes
            if counts.get(c.name, 0) != c.objects
        }
        status.restored.blobs = copy_store(store.child(BLOBS), self.backends.blobs.store).files
        try:
            raw = store.get_bytes(REDIS_FILE)
        except ObjectMissing:
            raw = None
        if raw is not None:
            status.restored.redis_keys = import_snapshot(
                self.backends.redis, RedisSnapshot.model_validate_json(raw)
            )

    def _ensure_schema(self) -> None:
        """The classes this service writes to, which the restore dropped where empty: back in place when
        the backup did not bring them (another model's, or a failed restore), so ingest goes on without
        a restart."""
        try:
            self.backends.ensure_schema()
        except Exception:  # best effort after the restore itself succeeded; each process ensures it at start
            log.exception("could not ensure the Weaviate schema after a restore")

    def _save(self, status: RestoreStatus) -> None:
        self.backends.redis.set(
            RESTORE + status.backup_id, status.model_dump_json(), ex=self.settings.job_ttl_s
        )

    def restore_status(self, backup_id: str) -> RestoreStatus:
        check_backup_id(backup_id)
        raw = self.backends.redis.get(RESTORE + backup_id)
        if raw is None:
            raise NotFound(f"no restore of backup {backup_id!r} on this stack")
        status = RestoreStatus.model_validate_json(raw)
        if status.state is RestoreState.RUNNING and self.lock.holder() != f"restore:{backup_id}":
            status.state = RestoreState.FAILED
            status.error = status.error or "interrupted: the process that ran it stopped"
        return status
