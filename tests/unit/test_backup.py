"""Backups (indexer/backup/): the manifest and its ids, the targets a request may name, the copy of a
store, and the export and import of ended job records through a real redis-server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from clipsearch.redis_server import RedisServer
from indexer.backup.blobs import copy_store
from indexer.backup.listing import iter_keys
from indexer.backup.lock import LOCK, BackupLock
from indexer.backup.manifest import (
    MANIFEST,
    BackupState,
    CollectionEntry,
    Manifest,
    WeaviateClass,
    WeaviatePart,
    check_backup_id,
    list_manifests,
    new_backup_id,
    read_manifest,
    write_manifest,
)
from indexer.backup.redis_state import RedisSnapshot, export_ended_jobs, import_snapshot
from indexer.backup.target import parse_place, resolve_target
from indexer.errors import Conflict, Forbidden, InvalidInput, NotFound
from indexer.jobs.store import ItemOutcome, JobState, JobStore, Outcome
from indexer.services.backends import Backends
from indexer.services.backup import BackupService
from indexer.settings import Settings
from indexer.storage.objectstore import LocalObjectStore
from search_api.app import create_app
from tests.preconditions import missing

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def manifest(backup_id: str, created: datetime = T0) -> Manifest:
    return Manifest(
        id=backup_id,
        target="/b",
        created_at=created,
        versions={"clipsearch": "0.1.0", "weaviate": "1.39.3"},
        collections=[CollectionEntry(name="photos", model_id="m", images=3)],
        weaviate=WeaviatePart(backend="filesystem", classes=[WeaviateClass(name="Images_m", objects=3)]),
    )


def test_backup_ids_are_weaviate_ids_and_sort_by_time() -> None:
    first, second = new_backup_id(T0), new_backup_id(T0 + timedelta(seconds=1))
    assert check_backup_id(first) == first
    assert first.startswith("20261205-100000-") and first < second
    for bad in ("", "UPPER", "../x", "a/b", "-lead", "x" * 200):
        with pytest.raises(InvalidInput):
            check_backup_id(bad)


def test_manifest_round_trip_replace_and_list(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    old, new = manifest("20261205-100000-aaaaaa"), manifest("20261205-110000-bbbbbb", T0 + timedelta(hours=1))
    write_manifest(store.child(old.id), old)
    write_manifest(store.child(new.id), new)
    new.state = BackupState.COMPLETED  # written again when the backup ends: the file is replaced
    write_manifest(store.child(new.id), new)
    (tmp_path / "not-a-backup").mkdir()
    (tmp_path / "junk-id").mkdir()
    (tmp_path / "junk-id" / MANIFEST).write_text("{not json")

    assert read_manifest(store, new.id) == new
    assert read_manifest(store, new.id).weaviate.objects == 3  # type: ignore[union-attr]
    assert [m.id for m in list_manifests(store)] == [new.id, old.id]
    with pytest.raises(NotFound):
        read_manifest(store, "20991231-000000-cccccc")
    with pytest.raises(InvalidInput):
        read_manifest(store, "junk-id")


def test_a_manifest_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    future = manifest("20261205-100000-dddddd").model_copy(update={"format": 99})
    write_manifest(store.child(future.id), future)
    with pytest.raises(InvalidInput, match="format 99"):
        read_manifest(store, future.id)


def test_targets_are_the_default_or_allowed_ones(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", backup_targets=[str(tmp_path / "extra"), "s3://bk/pre"])
    assert resolve_target(settings).url == str((tmp_path / "data" / "backups").resolve())
    assert resolve_target(settings, str(tmp_path / "extra" / "nightly")).url.endswith("extra/nightly")
    assert resolve_target(settings, "s3://bk/pre/daily").place.bucket == "bk"
    for refused in (
        "/etc",
        str(tmp_path / "extra" / ".." / "elsewhere"),
        str(tmp_path / "extra-not"),
        "s3://bk/prefix",
        "s3://other/pre",
    ):
        with pytest.raises(Forbidden):
            resolve_target(settings, refused)
    for malformed in ("http://x/y", "s3:///nobucket", " ", "/tmp/a\x00b", "/tmp/a\nb", "/tmp/\ud800"):
        with pytest.raises(InvalidInput):
            parse_place(malformed)


def test_weaviate_writes_below_the_backup(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, backup_targets=["s3://bk/pre"])
    backend, location = resolve_target(settings).weaviate_location("id1")
    assert backend.value == "filesystem"
    assert location._to_dict() == {"path": str((tmp_path / "backups" / "id1" / "weaviate").resolve())}
    backend, location = resolve_target(settings, "s3://bk/pre").weaviate_location("id1")
    assert backend.value == "s3"
    assert location._to_dict() == {"bucket": "bk", "path": "pre/id1/weaviate"}


def test_copy_store_copies_every_finished_file(tmp_path: Path) -> None:
    source = LocalObjectStore(tmp_path / "src")
    source.put_bytes("originals/ab/abc", b"original")
    source.put_bytes("thumbnails/ab/abc.jpg", b"thumb")
    (tmp_path / "src" / "originals" / "ab" / ".tmp-half").write_bytes(b"being written")
    dest = LocalObjectStore(tmp_path / "dst")
    count = copy_store(source, dest)
    assert (count.files, count.bytes, count.vanished) == (2, 13, 0)
    assert sorted(iter_keys(dest)) == ["originals/ab/abc", "thumbnails/ab/abc.jpg"]
    assert dest.get_bytes("originals/ab/abc") == b"original"


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        missing("no redis-server on this machine (scripts/setup.sh installs it)")
    server = RedisServer(tmp_path / "redis", tmp_path / "logs")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def redis_client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def test_ended_jobs_survive_export_and_import(redis_client: redis.Redis) -> None:
    jobs = JobStore(redis_client, ttl_s=3600)
    items = [{"file": "a.jpg"}, {"file": "b.jpg"}]
    done = jobs.create("upload", "photos", items)
    jobs.mark_running(done)
    jobs.record_many(
        done,
        [ItemOutcome(0, Outcome.INDEXED), ItemOutcome(1, Outcome.FAILED, "b.jpg", "not an image")],
    )
    running = jobs.create("upload", "photos", items)
    jobs.mark_running(running)
    before = jobs.get(done)
    assert before.state is JobState.COMPLETED

    snapshot = RedisSnapshot.model_validate_json(export_ended_jobs(redis_client).model_dump_json())
    assert snapshot.jobs == [done]  # a running job's chunks are in the broker: not restorable
    redis_client.flushdb()

    written = import_snapshot(redis_client, snapshot)
    assert written == len(snapshot.keys) >= 3  # the report, the items, the outcomes, the errors
    assert jobs.get(done) == before
    assert [r.id for r in jobs.list()] == [done]
    assert jobs.count_by_state()[JobState.COMPLETED.value] == 1
    assert 0 < redis_client.ttl(f"clipsearch:job:{done}") <= 3600
    with pytest.raises(NotFound):
        jobs.get(running)
    assert import_snapshot(redis_client, snapshot) == 0  # what is there is never overwritten


def test_without_api_keys_backups_answer_loopback_clients_only(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0"))
    client = app.test_client()
    remote = client.get("/admin/backups", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert remote.status_code == 403 and remote.get_json()["error"]["code"] == "forbidden"
    local = client.get("/admin/backups", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert local.status_code == 200 and local.get_json() == {"backups": []}
    elsewhere = client.get("/admin/backups", query_string={"from": "/etc"})
    assert elsewhere.status_code == 403


def test_a_backup_is_running_only_while_its_lock_is_held(redis_server: RedisServer, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=redis_server.url)
    service = BackupService(Backends(settings))
    started = manifest("20261205-100000-eeeeee")
    write_manifest(LocalObjectStore(tmp_path / "backups" / started.id), started)
    service.lock.acquire(f"backup:{started.id}")
    assert service.get(started.id).state is BackupState.RUNNING
    with pytest.raises(Conflict, match="another backup"):
        service.lock.acquire("backup:another")
    with pytest.raises(Conflict, match="another backup"):
        service.start()
    service.lock.release("backup:another")  # only the holder releases it
    assert service.lock.holder() == f"backup:{started.id}"
    service.lock.release(f"backup:{started.id}")  # as when its process dies and the key lapses
    assert [m.state for m in service.list()] == [BackupState.INTERRUPTED]


def test_the_lock_is_renewed_and_released_by_its_holder_only(redis_client: redis.Redis) -> None:
    lock = BackupLock(redis_client, ttl_s=60)
    with lock.kept("restore:x"):
        lock.acquire("restore:x")
        redis_client.pexpire(LOCK, 500)  # about to lapse
        assert not lock.renew("restore:other") and redis_client.pttl(LOCK) <= 500
        assert lock.renew("restore:x") and redis_client.pttl(LOCK) > 50_000
    assert lock.holder() is None
