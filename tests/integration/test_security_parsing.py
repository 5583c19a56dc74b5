"""Input parsing bounds over HTTP against the real stack: zip archives, server-side folders, TIFF headers,
ids in paths and job items read back from Redis. Each refusal is a 4xx (or a per-item failure) with the
reason, and nothing else is lost."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import redis

from indexer.jobs.store import JobStore, new_job_id
from indexer.settings import Settings
from tests.craft import forged_eocd, local_data_offset, patch_entry, tiff, zip_bytes
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job
from workers.celery_factory import make_celery


def _post_zip(api: Api, name: str, data: bytes, filename: str = "p.zip") -> Any:
    return api.post(f"/collections/{name}/zip", files={"file": (filename, data, "application/zip")})


def _count(api: Api, name: str) -> int:
    body: dict[str, Any] = api.get(f"/collections/{name}").json()
    return int(body["count"])


def _reasons(report: dict[str, Any]) -> dict[str, str]:
    return {e["file"]: e["reason"] for e in report["errors"]}


# ------------------------------------------------------------------------------------------- zips
def test_zip_entries_with_bad_names_or_versions_fail_alone(api: Api) -> None:
    name = new_collection(api)
    entries = {f"{i}.jpg": make_image(4000 + i) for i in range(5)}
    data = zip_bytes(entries)
    data = patch_entry(data, 0, flags=0x800, name_byte=0xFF)  # flagged UTF-8, is not
    data = patch_entry(data, 1, version=99)  # "needs zip 9.9"
    data = patch_entry(data, 2, method=99)  # unknown compression
    response = _post_zip(api, name, data)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 2
    reasons = {r["file"]: r["reason"] for r in body["rejected"]}
    assert reasons == {
        "p.zip:\ufffd.jpg": "entry name is not valid UTF-8 although the archive flags it as UTF-8",
        "p.zip:1.jpg": "entry needs zip version 9.9 to extract; 6.3 is supported",
        "p.zip:2.jpg": "unsupported compression method 99 (stored, deflate, bzip2 and lzma are)",
    }
    report = wait_job(api, body["job_id"])
    assert (report["state"], report["done"], report["failed"]) == ("completed", 2, 3)
    assert _count(api, name) == 2


def test_corrupt_entry_fails_alone_and_the_rest_of_its_chunk_indexes(api: Api) -> None:
    name = new_collection(api)
    images = {f"{i:02d}.jpg": make_image(4100 + i) for i in range(6)}
    deflated = bytearray(zip_bytes(images, zipfile.ZIP_DEFLATED))
    deflated[local_data_offset(bytes(deflated), 1)] = 0xFF  # block type 3: an invalid deflate stream
    stored = bytearray(zip_bytes(images, zipfile.ZIP_STORED))
    stored[local_data_offset(bytes(stored), 3) + 200] ^= 0xFF  # the bytes no longer match their CRC
    for data, bad, fragment in ((deflated, "01.jpg", "corrupt archive entry"), (stored, "03.jpg", "CRC")):
        collection = new_collection(api)
        response = _post_zip(api, collection, bytes(data))
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 6
        report = wait_job(api, response.json()["job_id"])  # one chunk of 8 in the test stack
        assert (report["state"], report["done"], report["failed"]) == ("completed", 5, 1), report
        assert fragment in _reasons(report)[f"p.zip:{bad}"]
        assert _count(api, collection) == 5
    assert _count(api, name) == 0


def test_zip_caps_refuse_before_the_directory_is_parsed(api: Api) -> None:
    name = new_collection(api)
    wait_job(api, upload(api, name, [("keep.jpg", make_image(4200))])["job_id"])
    cases = [
        # Many tiny entries, announced by the EOCD record (classic and zip64): never parsed.
        (forged_eocd(entries=65_535, cd_size=65_535 * 46), 413, "declares 65535 entries"),
        (forged_eocd(entries=3 * 10**9, cd_size=46 * 3 * 10**9, zip64=True), 413, "declares 3000000000"),
        (forged_eocd(entries=5, cd_size=64 << 20), 413, "central directory of 67108864 bytes"),
        (forged_eocd(entries=5, cd_size=64 << 20, zip64=True), 413, "central directory of 67108864 bytes"),
        # Directories count as entries: 10001 records of which 10000 are directories.
        (
            zip_bytes({**{f"d{i}/": b"" for i in range(10_000)}, "a.jpg": make_image(4201)}),
            413,
            "declares 10001 entries",
        ),
        # Under the entry and ratio caps, but the declared sizes add up to 6 GB.
        (
            patch_entry(
                patch_entry(
                    zip_bytes({"a.jpg": make_image(4202), "b.jpg": make_image(4203)}, zipfile.ZIP_STORED),
                    0,
                    file_size=3_000_000_000,
                ),
                1,
                file_size=3_000_000_000,
            ),
            413,
            "would expand to 6000000000 bytes",
        ),
        # An EOCD whose directory is not in the file, and junk: the archive is unreadable.
        (forged_eocd(entries=2, cd_size=92), 400, "not a valid zip archive"),
        (b"PK\x05\x06" + os.urandom(10), 400, "not a valid zip archive"),
    ]
    for data, status, fragment in cases:
        response = _post_zip(api, name, data)
        assert response.status_code == status, (fragment, response.text)
        assert fragment in response.json()["error"]["message"], response.text
    assert _count(api, name) == 1  # nothing lost
    ok = _post_zip(api, name, zip_bytes({"b.jpg": make_image(4204)}))
    assert ok.status_code == 202
    wait_job(api, ok.json()["job_id"])
    assert _count(api, name) == 2


# ---------------------------------------------------------------------------------------- folders
def test_folder_paths_with_nul_or_loops_are_4xx(api: Api, folder_root: Path) -> None:
    name = new_collection(api)
    loop = folder_root / "self-loop"
    os.symlink(loop, loop)
    cases = [
        (str(folder_root) + "/a\x00b", 400, "NUL byte"),
        ("relative/path", 400, "must be absolute"),
        (str(loop / "x"), 400, "symbolic link loop"),
        ("/" + "a" * 5000, 403, "not under an allowed folder root"),
    ]
    for path, status, fragment in cases:
        response = api.post(f"/collections/{name}/folder", json={"path": path})
        assert response.status_code == status, (path[:40], response.text)
        assert fragment in response.json()["error"]["message"], response.text


def test_folder_walk_reports_links_and_completes(api: Api, folder_root: Path, tmp_path: Path) -> None:
    name = new_collection(api)
    folder = folder_root / "links"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.jpg").write_bytes(make_image(4300))
    (folder / "sub" / "two.jpg").write_bytes(make_image(4301))
    os.symlink(folder / "b.jpg", folder / "a.jpg")  # a -> b -> a
    os.symlink(folder / "a.jpg", folder / "b.jpg")
    os.symlink(folder, folder / "sub" / "up")  # a directory loop
    os.symlink(tmp_path, folder / "outside-dir")  # a directory outside the root
    (tmp_path / "secret.jpg").write_bytes(make_image(4302))
    os.symlink(tmp_path / "secret.jpg", folder / "secret.jpg")
    os.symlink(folder / "missing.jpg", folder / "dangling.jpg")
    os.symlink(folder / "one.jpg", folder / "alias.jpg")  # inside the root: indexed (a duplicate)
    response = api.post(f"/collections/{name}/folder", json={"path": str(folder)})
    assert response.status_code == 202, response.text
    body = response.json()
    rejected = {Path(r["file"]).name: r["reason"] for r in body["rejected"]}
    assert rejected == {
        "a.jpg": "symbolic link loop",
        "b.jpg": "symbolic link loop",
        "up": "symbolic link to a directory (not followed)",
        "outside-dir": "symbolic link to a directory (not followed)",
        "secret.jpg": "symbolic link that points outside the allowed root",
        "dangling.jpg": "broken symbolic link (its target does not exist)",
    }
    report = wait_job(api, body["job_id"])
    assert report["state"] == "completed"
    assert (report["done"], report["duplicates"]) == (2, 1)


# ------------------------------------------------------------------------------------------- TIFF
def _dup_width_tiff(big: bool = False) -> bytes:
    """9000x9000 to libtiff (its first ImageWidth), 10x9000 to a reader that keeps the last one."""
    entries = [(256, 4, 9000), (256, 4, 10), (257, 4, 9000), (258, 3, 8), (259, 3, 1), (262, 3, 1)]
    return tiff([*entries, (277, 3, 1), (278, 4, 9000)], bytes(90_000), big=big)


def test_tiff_with_duplicate_width_tags_is_refused_by_the_pixel_cap(api: Api) -> None:
    name = new_collection(api)
    wait_job(api, upload(api, name, [("seed.jpg", make_image(4400))])["job_id"])
    for big in (False, True):
        response = api.post(
            "/search/image",
            files={"image": ("dup.tif", _dup_width_tiff(big), "image/tiff")},
            data={"collection": name},
        )
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert "9000x9000 = 81000000 pixels, over the limit of 64000000" in error["message"]
        assert error["details"]["reason"] == "too_many_pixels"
    files = [("ok1.jpg", make_image(4401)), ("dup.tif", _dup_width_tiff()), ("ok2.jpg", make_image(4402))]
    parts = [("files", (n, d, "image/tiff" if n.endswith(".tif") else "image/jpeg")) for n, d in files]
    job = api.post(f"/collections/{name}/images", files=parts)
    assert job.status_code == 202, job.text
    report = wait_job(api, job.json()["job_id"])
    assert (report["done"], report["failed"]) == (2, 1)
    assert "9000x9000 = 81000000 pixels" in _reasons(report)["dup.tif"]
    assert _count(api, name) == 3


# -------------------------------------------------------------------------------------------- ids
def test_ids_in_paths_are_checked_at_the_edge(api: Api) -> None:
    name = new_collection(api)
    job = upload(api, name, [("id.jpg", make_image(4500))])["job_id"]
    wait_job(api, job)
    cases = [
        ("GET", f"/jobs/{job}:items", 404, "unknown job"),
        ("GET", f"/jobs/{job}:outcome", 404, "unknown job"),
        ("GET", f"/jobs/{job}:errors", 404, "unknown job"),
        ("DELETE", f"/jobs/{job}:items", 404, "unknown job"),
        ("GET", "/jobs/*", 404, "unknown job"),
        ("GET", f"/jobs/{job.upper()}", 404, "32 lowercase hex"),
        ("GET", "/jobs/%00", 404, "unknown job"),
        ("GET", "/collections/a%00b", 400, "invalid collection name"),
        ("GET", f"/collections/{name}%0A", 400, "invalid collection name"),
        ("POST", "/collections/a:b/zip", 400, "invalid collection name"),
        ("GET", "/collections/" + "a" * 300, 400, "invalid collection name"),
        ("GET", "/images/%27%20OR%201=1", 400, "malformed image id"),
        ("GET", "/images/x%00/thumbnail", 400, "malformed image id"),
        ("DELETE", "/images/not-a-uuid", 400, "malformed image id"),
        ("GET", "/class-sets/a%0A", 400, "invalid class set name"),
        ("GET", "/classifiers/%2E%2E", 400, "invalid classifier name"),
        ("GET", "/web/%00", 404, "no such file"),
    ]
    for method, path, status, fragment in cases:
        response = api.request(method, path)
        assert response.status_code == status, (method, path, response.text)
        assert fragment in response.json()["error"]["message"], (path, response.text)
    report = api.get(f"/jobs/{job}").json()  # the real job is untouched
    assert (report["state"], report["done"]) == ("completed", 1)


# -------------------------------------------------------------------------------------- job items
def test_forged_job_items_are_failed_not_executed(api: Api, settings: Settings, folder_root: Path) -> None:
    """Someone who can write to Redis enqueues items that would read arbitrary files."""
    name = new_collection(api)
    job = new_job_id()
    staging = settings.staging_dir / job
    staging.mkdir(parents=True)
    good = staging / "good.jpg"
    good.write_bytes(make_image(4600))
    other_job = settings.staging_dir / new_job_id()
    other_job.mkdir(parents=True)
    (other_job / "theirs.jpg").write_bytes(make_image(4601))
    (folder_root / "real.jpg").write_bytes(make_image(4602))
    items: list[dict[str, Any]] = [
        {"kind": "stored", "sha256": "../../../../etc/passwd", "name": "stored-escape"},
        {"kind": "file", "path": "/etc/passwd", "name": "file-escape"},
        {"kind": "file", "path": str(other_job / "theirs.jpg"), "name": "other-job"},
        {"kind": "folder", "path": "/etc/passwd", "root": "/", "name": "folder-root"},
        {"kind": "folder", "path": "/etc/passwd", "root": str(folder_root.resolve()), "name": "folder-out"},
        {"kind": "zip", "path": "/etc/passwd", "entry": "x", "record": 0, "name": "zip-escape"},
        {"kind": "exec", "cmd": "rm -rf /", "name": "unknown-kind"},
        {"kind": "file", "name": "no-path"},
        {"kind": "file", "path": str(good), "name": "good"},
    ]
    client = redis.Redis.from_url(str(settings.redis_url))
    JobStore(client).create("upload", name, items, job_id=job)
    client.rpush(f"clipsearch:job:{job}:items", b"{not json")  # an entry that is not even JSON
    client.hincrby(f"clipsearch:job:{job}", "total", 1)
    make_celery(settings).send_task("clipsearch.ingest_chunk", args=[job, 0, len(items) + 1])
    report = wait_job(api, job)
    assert (report["state"], report["done"], report["failed"]) == ("completed", 1, 9), report
    reasons = _reasons(report)
    assert "64 lowercase hex" in reasons["stored-escape"]
    assert "outside" in reasons["file-escape"] and "outside" in reasons["other-job"]
    assert "FOLDER_ROOTS" in reasons["folder-root"] and "outside" in reasons["folder-out"]
    assert "outside" in reasons["zip-escape"]
    assert "unknown kind" in reasons["unknown-kind"]
    assert "`path`: Field required" in reasons["no-path"]
    assert "not JSON" in reasons[f"item {len(items)}"]
    assert _count(api, name) == 1
