"""The manifest of a backup: what it covers (collections, class sets, Weaviate classes with their object
counts, blobs, Redis keys), the versions that wrote it, and its state. Stored as ``manifest.json`` beside
the backup's parts; a restore checks its counts against what it restored."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field, ValidationError

from indexer.backup.listing import child_names
from indexer.errors import InvalidInput, NotFound
from indexer.storage.objectstore import ObjectMissing, ObjectStore

FORMAT = 1
MANIFEST = "manifest.json"
# Weaviate takes backup ids of lower-case letters, digits, '-' and '_'; ours are also safe object keys.
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")


class BackupState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # `running` in the manifest, but nobody holds the backup lock any more


class CollectionEntry(BaseModel):
    name: str
    model_id: str
    images: int


class WeaviateClass(BaseModel):
    name: str
    objects: int


class WeaviatePart(BaseModel):
    backend: str = Field(description="Weaviate's backup module: filesystem or s3")
    classes: list[WeaviateClass] = Field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(c.objects for c in self.classes)


class BlobPart(BaseModel):
    files: int = 0
    bytes: int = 0


class RedisPart(BaseModel):
    keys: int = 0
    jobs: int = Field(default=0, description="ended job records (running jobs are not backed up)")


class Manifest(BaseModel):
    format: int = FORMAT
    id: str
    target: str
    state: BackupState = BackupState.RUNNING
    created_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    versions: dict[str, str] = Field(
        default_factory=dict, description="clipsearch, weaviate and redis versions that wrote it"
    )
    collections: list[CollectionEntry] = Field(default_factory=list)
    class_sets: int = 0
    classifiers: int = 0
    weaviate: WeaviatePart | None = None
    blobs: BlobPart | None = None
    redis: RedisPart | None = None


def new_backup_id(now: datetime | None = None) -> str:
    """Sortable by time, unique enough: ``20261205-104512-3fa9c1``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_backup_id(backup_id: str) -> str:
    if not ID_PATTERN.fullmatch(backup_id):
        raise InvalidInput(f"malformed backup id {backup_id[:140]!r}: lower-case letters, digits, '-', '_'")
    return backup_id


def write_manifest(store: ObjectStore, manifest: Manifest) -> None:
    """Write (or replace) ``manifest.json`` in one backup's store."""
    store.delete(MANIFEST)  # a local store keeps a key that exists (content-addressed blobs)
    store.put_bytes(MANIFEST, manifest.model_dump_json(indent=2).encode())


def read_manifest(store: ObjectStore, backup_id: str) -> Manifest:
    """The manifest of backup ``backup_id`` below a target's store."""
    check_backup_id(backup_id)
    try:
        raw = store.child(backup_id).get_bytes(MANIFEST)
    except ObjectMissing as exc:
        raise NotFound(f"no backup {backup_id!r} in this target") from exc
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(
            f"the manifest of backup {backup_id!r} is not readable: {exc.errors()[:3]}"
        ) from exc
    if manifest.format > FORMAT:
        raise InvalidInput(
            f"backup {backup_id!r} has manifest format {manifest.format}; this version reads up to {FORMAT}"
        )
    return manifest


def list_manifests(store: ObjectStore) -> list[Manifest]:
    """Every backup of a target, newest first (directories without a readable manifest are skipped)."""
    found: list[Manifest] = []
    for name in child_names(store):
        if not ID_PATTERN.fullmatch(name):
            continue
        try:
            found.append(read_manifest(store, name))
        except (NotFound, InvalidInput):
            continue
    return sorted(found, key=lambda m: m.created_at, reverse=True)
