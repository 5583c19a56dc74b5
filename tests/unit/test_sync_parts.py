"""The pure parts of a folder sync: the diff of a folder against a collection, the report's counts from
the plan's item layout, and the debounce of `clipsearch sync --watch`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import redis

from clipsearch.debounce import Debouncer
from indexer.jobs.kinds import JobKind
from indexer.jobs.store import JobState, JobStore, Outcome
from indexer.jobs.sync_record import SyncPlanned, SyncRecord, sync_counts
from indexer.settings import Settings
from indexer.sync import hash_cache, running
from indexer.sync.diff import Indexed, diff
from indexer.sync.files import folder_files
from tests.imagegen import make_image

D = "/photos"


def _image(name: str, sha: str) -> Indexed:
    return Indexed(f"id-{sha}", f"{D}/{name}", sha)


def test_diff_sorts_every_kind_of_change() -> None:
    indexed = [
        _image("same.jpg", "s1"),
        _image("changed.jpg", "old"),
        _image("gone.jpg", "g1"),
        _image("before.jpg", "m1"),
    ]
    files = {
        f"{D}/same.jpg": "s1",
        f"{D}/changed.jpg": "new",
        f"{D}/after.jpg": "m1",
        f"{D}/fresh.jpg": "f1",
    }
    stored = {image.sha256: image for image in indexed if image.sha256 in files.values()}
    found = diff(files, indexed, stored)
    assert found.add == [f"{D}/fresh.jpg"]
    assert found.replace == [f"{D}/changed.jpg"]  # embedded, then the old image at that path goes
    assert found.moves == [(indexed[3], f"{D}/after.jpg")]
    assert found.remove == [indexed[2]]
    assert (found.replaced, found.removed, found.unchanged) == (1, 1, 1)


def test_a_changed_file_whose_new_bytes_are_indexed_replaces_at_once() -> None:
    a, b = _image("a.jpg", "sa"), _image("b.jpg", "sb")
    files = {f"{D}/a.jpg": "sb", f"{D}/b.jpg": "sb"}  # a.jpg overwritten with b.jpg's bytes
    found = diff(files, [a, b], {"sb": b})
    assert found.add == [] and found.replace == [] and found.moves == []
    assert found.remove == [a] and found.replaced == 1 and found.removed == 0 and found.unchanged == 1


def test_a_copy_is_not_a_move_and_swapped_names_are_two_moves() -> None:
    a = _image("a.jpg", "sa")
    copied = diff({f"{D}/a.jpg": "sa", f"{D}/copy.jpg": "sa"}, [a], {"sa": a})
    assert copied.moves == [] and copied.unchanged == 1 and not copied.add
    x, y = _image("x.jpg", "sx"), _image("y.jpg", "sy")
    swapped = diff({f"{D}/x.jpg": "sy", f"{D}/y.jpg": "sx"}, [x, y], {"sx": x, "sy": y})
    assert sorted(swapped.moves, key=lambda m: m[1]) == [(y, f"{D}/x.jpg"), (x, f"{D}/y.jpg")]
    assert not swapped.remove and not swapped.replace


def test_bytes_indexed_from_elsewhere_are_left_alone() -> None:
    uploaded = Indexed("id-u", "upload", "su", "other/u.jpg")  # uploaded from another folder
    synced = Indexed("id-b", "/elsewhere/b.jpg", "sb", "/elsewhere/b.jpg")  # another synced folder's
    found = diff({f"{D}/u.jpg": "su", f"{D}/b.jpg": "sb"}, [], {"su": uploaded, "sb": synced})
    assert found.unchanged == 2 and not (found.add or found.moves or found.remove or found.adopt)


def test_an_upload_of_the_folder_is_adopted() -> None:
    """`clipsearch index DIR` uploads with names relative to DIR, the page's folder drop with the folder's
    own name first: either takes the file's path (no re-embedding) and is tracked from then on."""
    cli = Indexed("id-c", "upload", "sc", "2023/c.jpg")
    page = Indexed("id-p", "upload", "sp", "photos/2023/p.jpg")
    partial = Indexed("id-x", "upload", "sx", "23/x.jpg")  # not a whole part of the path
    files = {f"{D}/2023/c.jpg": "sc", f"{D}/2023/p.jpg": "sp", f"{D}/2023/x.jpg": "sx"}
    found = diff(files, [], {"sc": cli, "sp": page, "sx": partial})
    assert found.adopt == [(cli, f"{D}/2023/c.jpg"), (page, f"{D}/2023/p.jpg")]
    assert found.unchanged == 1 and not (found.add or found.moves or found.remove)


def test_counts_take_failures_from_the_range_they_fall_in() -> None:
    planned = SyncPlanned(
        dry_run=False,
        added=5,
        replaced=3,
        moved=2,
        removed=3,
        unchanged=13,
        skipped=1,
        replace_end=2,
        add_end=7,
    )
    counts = sync_counts(planned.model_dump_json(), [1, 4, 5, 7], failed=4)
    # index 1: a replacement; 4 and 5: new files; 7: refused at planning
    assert (counts.replaced, counts.added, counts.failed) == (2, 3, 4)
    assert (counts.moved, counts.removed, counts.unchanged, counts.skipped) == (2, 3, 13, 1)


def test_debounce_waits_for_quiet_and_coalesces_a_burst() -> None:
    d = Debouncer(quiet_s=2.0, max_wait_s=30.0)
    assert not d.take(0.0)
    for i in range(5000):  # a burst of events over 5 s
        d.touch(i / 1000)
    assert not d.take(5.5)
    assert d.take(7.0)  # 2 s after the last event: one run
    assert not d.take(7.1)  # and only one


def test_debounce_runs_during_a_burst_that_never_pauses() -> None:
    d = Debouncer(quiet_s=2.0, max_wait_s=10.0)
    t = 0.0
    runs = 0
    while t < 25.0:
        d.touch(t)
        runs += d.take(t)
        t += 0.5
    assert runs == 2  # at 10 s and 20.5 s: never starved, never one per event


def test_one_delivery_queues_a_sync_and_a_dead_one_is_told_apart(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=3600)
    job = store.create(JobKind.SYNC, "trip", [], open_ended=True)
    first, second = (SyncRecord(redis_client, store.keys(job)[0]) for _ in range(2))
    assert first.claim()
    assert not second.claim() and not second.interrupted()  # the first is at work: left alone
    first.queued()
    assert not second.claim() and not second.interrupted()  # the first finished
    other = store.create(JobKind.SYNC, "trip", [], open_ended=True)
    dead, late = (SyncRecord(redis_client, store.keys(other)[0]) for _ in range(2))
    assert dead.claim()
    redis_client.delete(dead.key + ":sync_lease")  # its lease ran out: the worker died while queueing
    assert not late.claim() and late.interrupted()


def test_a_sync_report_carries_its_counts(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl_s=3600)
    job = store.create(JobKind.SYNC, "trip", [], open_ended=True)
    assert store.get(job).sync is None  # not planned yet
    planned = SyncPlanned(
        dry_run=False,
        added=2,
        replaced=1,
        moved=0,
        removed=4,
        unchanged=0,
        skipped=0,
        replace_end=1,
        add_end=3,
    )
    record = SyncRecord(redis_client, store.keys(job)[0])
    record.save(planned)
    record.save(planned.model_copy(update={"removed": 0}))  # a plan run again keeps the first counts
    store.append(job, [{"kind": "folder", "name": f"f{i}"} for i in range(3)])
    store.record(job, 0, Outcome.INDEXED)
    store.record(job, 1, Outcome.FAILED, "f1", "broken")
    store.record(job, 2, Outcome.INDEXED)
    store.close(job)
    for report in (store.get(job), store.get(job, with_errors=False)):
        assert report.state is JobState.COMPLETED and report.sync is not None
        assert (report.sync.added, report.sync.replaced, report.sync.removed, report.sync.failed) == (
            1,
            1,
            4,
            1,
        )


def test_a_folder_is_read_again_only_where_it_changed(tmp_path: Path, redis_client: redis.Redis) -> None:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        (root / ("sub" if i % 2 else "") / f"{i}.jpg").write_bytes(make_image(40 + i))
    (root / "notes.txt").write_text("not an image")
    (root / "bad\udcff.jpg").write_bytes(make_image(50))  # a name that is not UTF-8: refused, not a crash
    settings = Settings(data_dir=tmp_path / "data", folder_roots=[root])
    first = folder_files(str(root), settings, hash_cache.load(redis_client, str(root)))
    assert (first.hashed, len(first.files), first.skipped) == (5, 4, 1)
    assert [r.reason for r in first.refused] == ["file name is not valid UTF-8 (rename the file to index it)"]
    assert first.files[str(root / "sub" / "1.jpg")] == hashlib.sha256(make_image(41)).hexdigest()
    hash_cache.save(redis_client, first.folder, first.known)
    second = folder_files(str(root), settings, hash_cache.load(redis_client, str(root)))
    assert second.files == first.files and second.hashed == 1  # only the text file's head is read
    (root / "0.jpg").write_bytes(make_image(60))
    third = folder_files(str(root), settings, second.known)
    assert (
        third.hashed == 2 and third.files[str(root / "0.jpg")] == hashlib.sha256(make_image(60)).hexdigest()
    )


def test_one_sync_per_folder_at_a_time(redis_client: redis.Redis) -> None:
    live = {"job-a"}
    for key in redis_client.scan_iter(running.PREFIX + "*"):
        redis_client.delete(key)
    assert running.claim(redis_client, "c", "/photos", "job-a", 60, live.__contains__) is None
    assert running.claim(redis_client, "c", "/photos", "job-b", 60, live.__contains__) == "job-a"
    # another folder, or the same folder into another collection, is free
    assert running.claim(redis_client, "c", "/photos/2024", "job-c", 60, live.__contains__) is None
    assert running.claim(redis_client, "d", "/photos", "job-d", 60, live.__contains__) is None
    live.clear()  # job-a ended: the next sync of the folder takes it over
    assert running.claim(redis_client, "c", "/photos", "job-b", 60, live.__contains__) is None
    live.add("job-b")
    assert running.claim(redis_client, "c", "/photos", "job-e", 60, live.__contains__) == "job-b"
