"""Folder sync over HTTP against the real stack: POST /collections/<c>/sync (and its dry run) and
`clipsearch sync --watch` as a subprocess."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clipsearch.cli import main as cli
from clipsearch.stack import LocalStack
from indexer.settings import Settings
from indexer.storage.blobs import BlobStore
from indexer.store.connection import connect
from indexer.store.images import ImageStore
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, wait_job

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Stored:
    uuid: str
    sha256: str
    job_id: str
    vector: tuple[float, ...]


def _stored(settings: Settings, api: Api, name: str) -> dict[str, list[Stored]]:
    """source path -> the collection's image objects with that path (one each, unless indexed twice)."""
    client = connect(settings)
    try:
        store = ImageStore(client, api.get(f"/collections/{name}").json()["model_id"])
        found: dict[str, list[Stored]] = {}
        for obj in store.collection.iterator(
            include_vector=True, return_properties=["collection", "source", "sha256", "job_id"]
        ):
            if obj.properties["collection"] != name:
                continue
            raw = obj.vector["default"] if isinstance(obj.vector, dict) else obj.vector
            found.setdefault(str(obj.properties["source"]), []).append(
                Stored(
                    str(obj.uuid),
                    str(obj.properties["sha256"]),
                    str(obj.properties["job_id"]),
                    tuple(float(x) for x in raw),  # type: ignore[union-attr]
                )
            )
        return found
    finally:
        client.close()


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _sync(api: Api, name: str, folder: Path, dry_run: bool = False) -> dict[str, Any]:
    response = api.post(f"/collections/{name}/sync", json={"path": str(folder), "dry_run": dry_run})
    assert response.status_code == 202, response.text
    report = wait_job(api, response.json()["job_id"])
    assert report["state"] == "completed", report
    assert report["kind"] == "sync"
    return report


def _counts(report: dict[str, Any]) -> dict[str, int]:
    sync = report["sync"]
    return {key: sync[key] for key in ("added", "replaced", "moved", "removed", "failed", "unchanged")}


def test_sync_adds_replaces_moves_and_removes_exactly(
    api: Api, settings: Settings, folder_root: Path
) -> None:
    name = new_collection(api, "sync")
    folder = (folder_root / f"sync-{name}").resolve()
    (folder / "sub").mkdir(parents=True)
    for i in range(20):
        (folder / ("sub" if i % 4 == 0 else "") / f"img{i:02d}.jpg").write_bytes(make_image(7000 + i))
    first = _sync(api, name, folder)
    assert _counts(first) == dict(added=20, replaced=0, moved=0, removed=0, failed=0, unchanged=0)
    before = _stored(settings, api, name)
    assert {path: [s.sha256 for s in objs] for path, objs in before.items()} == {
        path: [sha] for path, sha in _files(folder).items()
    }

    # add 5, change 2, delete 3, rename 2 (one into a new sub-folder)
    for i in range(5):
        (folder / f"new{i}.jpg").write_bytes(make_image(7100 + i))
    changed = [folder / "img01.jpg", folder / "img02.jpg"]
    for i, path in enumerate(changed):
        path.write_bytes(make_image(7200 + i))
    deleted = [folder / "img03.jpg", folder / "sub" / "img04.jpg", folder / "img05.jpg"]
    deleted_shas = [before[str(p)][0].sha256 for p in deleted]
    replaced_shas = [before[str(p)][0].sha256 for p in changed]
    for path in deleted:
        path.unlink()
    (folder / "moved").mkdir()
    renames = {
        folder / "img06.jpg": folder / "renamed06.jpg",
        folder / "sub" / "img08.jpg": folder / "moved" / "x.jpg",
    }
    for old, new in renames.items():
        old.rename(new)
    expected = dict(added=5, replaced=2, moved=2, removed=3, failed=0, unchanged=13)

    dry = _sync(api, name, folder, dry_run=True)
    assert dry["sync"]["dry_run"] is True and _counts(dry) == expected
    assert dry["total"] == 0 and dry["done"] == 0  # nothing was queued
    assert _stored(settings, api, name) == before  # and nothing changed

    report = _sync(api, name, folder)
    assert report["sync"]["dry_run"] is False and _counts(report) == expected, report
    assert (report["done"], report["duplicates"], report["failed"]) == (7, 0, 0)  # only 5 + 2 embedded

    after = _stored(settings, api, name)
    files = _files(folder)
    assert len(files) == 22
    # the collection is the folder: one object per file (nothing indexed twice), with the file's bytes
    assert {path: [s.sha256 for s in objs] for path, objs in after.items()} == {
        path: [sha] for path, sha in files.items()
    }
    assert api.get(f"/collections/{name}").json()["count"] == 22
    for old, new in renames.items():  # the same object, the same vector bit for bit, not re-written
        assert after[str(new)] == before[str(old)]
        assert after[str(new)][0].job_id == first["id"]
    for path in changed:
        assert after[str(path)][0].job_id == report["id"]
    blobs = BlobStore.from_settings(settings)
    for sha in deleted_shas + replaced_shas:
        assert not blobs.has(sha) and not blobs.has(sha, "thumbnail")
    for sha in files.values():
        assert blobs.has(sha) and blobs.has(sha, "thumbnail")

    again = _sync(api, name, folder)
    assert _counts(again) == dict(added=0, replaced=0, moved=0, removed=0, failed=0, unchanged=22)
    assert _stored(settings, api, name) == after


def test_a_folder_uploaded_by_the_cli_is_adopted_then_kept_in_step(
    api: Api, settings: Settings, folder_root: Path
) -> None:
    """`clipsearch index --upload DIR` stores paths relative to DIR with the source "upload"; a later sync
    of DIR adopts those images (the file's path, the same vector) and removes them once their file goes.
    A file deleted before the first sync cannot be told from another upload's: it is left alone."""
    name = new_collection(api, "adopt")
    folder = (folder_root / f"adopt-{name}").resolve()
    (folder / "2023").mkdir(parents=True)
    for i in range(6):
        (folder / ("2023" if i % 2 else "") / f"img{i}.jpg").write_bytes(make_image(7300 + i))
    assert cli(["index", str(folder), "--collection", name, "--upload", "--url", api.base]) == 0
    uploaded = _stored(settings, api, name)
    assert list(uploaded) == ["upload"] and len(uploaded["upload"]) == 6
    (folder / "2023" / "img1.jpg").unlink()

    expected = dict(added=0, replaced=0, moved=0, removed=0, failed=0, unchanged=0)
    dry = _sync(api, name, folder, dry_run=True)
    assert _counts(dry) == expected and dry["sync"]["adopted"] == 5
    assert _stored(settings, api, name) == uploaded
    report = _sync(api, name, folder)
    assert _counts(report) == expected and report["sync"]["adopted"] == 5 and report["done"] == 0
    after = _stored(settings, api, name)
    files = _files(folder)
    assert {path: [s.sha256 for s in objs] for path, objs in after.items() if path != "upload"} == {
        path: [sha] for path, sha in files.items()
    }
    assert len(after["upload"]) == 1  # the file deleted before any sync
    vectors = {s.sha256: s.vector for objs in uploaded.values() for s in objs}
    assert all(vectors[s.sha256] == s.vector for objs in after.values() for s in objs)  # not re-embedded

    (folder / "img0.jpg").unlink()
    again = _sync(api, name, folder)
    assert _counts(again) == dict(expected, removed=1, unchanged=4) and again["sync"]["adopted"] == 0
    assert str(folder / "img0.jpg") not in _stored(settings, api, name)


def test_a_second_sync_of_a_folder_waits_for_the_first(
    api: Api, folder_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two syncs of one folder at once would plan against a collection that the first is changing: the
    API refuses the second (409, naming the running job), and `clipsearch sync` waits for it, then runs."""
    name = new_collection(api, "twice")
    folder = (folder_root / f"twice-{name}").resolve()
    folder.mkdir()
    for i in range(120):
        (folder / f"img{i:03d}.jpg").write_bytes(make_image(7400 + i))
    first = api.post(f"/collections/{name}/sync", json={"path": str(folder)})
    assert first.status_code == 202, first.text
    job = first.json()["job_id"]
    second = api.post(f"/collections/{name}/sync", json={"path": str(folder), "dry_run": True})
    assert second.status_code == 409, second.text
    assert second.json()["error"]["details"] == {"reason": "sync_running", "job_id": job}
    assert cli(["sync", str(folder), "--collection", name, "--url", api.base]) == 0
    out = capsys.readouterr().out
    assert f"is running (job {job}): waiting for it" in out
    assert "added 0, replaced 0, moved 0, removed 0, failed 0 (unchanged 120)" in out
    assert wait_job(api, job)["sync"]["added"] == 120


def test_sync_refuses_a_folder_outside_the_roots(api: Api, tmp_path: Path) -> None:
    name = new_collection(api, "syncout")
    response = api.post(f"/collections/{name}/sync", json={"path": str(tmp_path)})
    assert response.status_code == 403
    assert "not under an allowed folder root" in response.json()["error"]["message"]
    missing = api.post(f"/collections/nope-{name}/sync", json={"path": str(tmp_path)})
    assert missing.status_code == 404


def _sources(api: Api, name: str) -> set[str]:
    body = api.post("/search/text", json={"collection": name, "query": "a photo", "limit": 50}).json()
    return {hit["filename"] for hit in body["results"]}


def _wait_sources(api: Api, name: str, want: set[str], timeout_s: float) -> float:
    """Seconds until the collection holds exactly the images of these paths (fails past the deadline)."""
    start = time.monotonic()
    while (have := _sources(api, name)) != want:
        assert time.monotonic() - start < timeout_s, f"{name}: {sorted(have)}, not {sorted(want)}"
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture()
def watched(api: Api, stack: LocalStack, folder_root: Path) -> Iterator[tuple[str, Path]]:
    name = new_collection(api, "watch")
    folder = (folder_root / f"watch-{name}").resolve()
    folder.mkdir()
    for i in range(2):
        (folder / f"a{i}.jpg").write_bytes(make_image(7300 + i))
    argv = [sys.executable, "-m", "clipsearch.cli", "sync", str(folder), "--collection", name]
    argv += ["--watch", "--quiet-s", "1", "--url", stack.api_url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield name, folder
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        print(out)
        shutil.rmtree(folder, ignore_errors=True)


def _sync_jobs(api: Api, name: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = api.get("/jobs", params={"limit": 500}).json()["jobs"]
    return [j for j in jobs if j["collection"] == name and j["kind"] == "sync"]


def test_watch_follows_changes_and_coalesces_a_burst(api: Api, watched: tuple[str, Path]) -> None:
    name, folder = watched
    a0, a1, b, c = (str(folder / n) for n in ("a0.jpg", "a1.jpg", "b.jpg", "c.jpg"))
    _wait_sources(api, name, {a0, a1}, timeout_s=60)  # the first sync, at start
    (folder / "b.jpg").write_bytes(make_image(7310))
    took = _wait_sources(api, name, {a0, a1, b}, timeout_s=20)
    print(f"watch: a new file indexed {took:.1f} s after it was written")
    assert len(_sync_jobs(api, name)) == 2

    # a burst of thousands of events (1000 files created, written, closed, then deleted with their
    # folder) around one new image and one deleted one
    junk = folder / "junk"
    junk.mkdir()
    for i in range(1000):
        (junk / f"{i}.txt").write_text("not an image")
    (folder / "c.jpg").write_bytes(make_image(7311))
    (folder / "a0.jpg").unlink()
    shutil.rmtree(junk)
    _wait_sources(api, name, {a1, b, c}, timeout_s=30)
    jobs = _sync_jobs(api, name)
    assert all(j["state"] == "completed" for j in jobs)
    # one run at start, one for b.jpg, and the burst coalesced into one (two if it straddled a pause)
    assert 3 <= len(jobs) <= 4, [j["sync"] for j in jobs]
