"""Large multipart uploads go to disk once (issue 9): each file part is written straight into the staging
area and renamed into place, never held in the API's memory and never copied a second time.

Measured on the API's gunicorn worker process: `/proc/<pid>/io` wchar (bytes it passed to write()) grows
by about the upload's size, not twice it (werkzeug's spool file plus a staging copy, as before), and its
peak resident set (VmHWM, reset through /proc/<pid>/clear_refs first) grows by far less than the upload.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from clipsearch.stack import LocalStack
from indexer.store.schema import image_uuid
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, wait_job

pytestmark = pytest.mark.integration

PART_BYTES = 40 * 1024 * 1024
PARTS = 3


def _api_workers(stack: LocalStack) -> list[int]:
    assert stack.api is not None and stack.api.pid is not None
    master = stack.api.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert children, "gunicorn has no worker process"
    return [int(pid) for pid in children]


def _wchar(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/<pid>/io")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/<pid>/status")


@pytest.mark.parametrize("route", ["images", "session"])
def test_large_upload_is_written_once_and_not_held_in_memory(api: Api, stack: LocalStack, route: str) -> None:
    collection = new_collection(api, "big")
    opened = api.post(f"/collections/{collection}/uploads", json={}).json() if route == "session" else {}
    url = opened.get("files_url", f"/collections/{collection}/images")
    # Real JPEGs followed by 40 MB of random bytes each (decoders stop at the end-of-image marker).
    seed = 4200 if route == "images" else 4300
    files = [(f"big-{i}.jpg", make_image(seed + i) + os.urandom(PART_BYTES)) for i in range(PARTS)]
    total = sum(len(data) for _, data in files)
    workers = _api_workers(stack)
    api.get("/health")  # warm: the first request of a worker allocates what every request needs
    for pid in workers:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    rss_before = {pid: _status_kib(pid, "VmRSS") for pid in workers}
    written_before = {pid: _wchar(pid) for pid in workers}

    parts = [("files", (name, data, "image/jpeg")) for name, data in files]
    response = api.post(url, files=parts)
    assert response.status_code == 202, response.text

    written = sum(_wchar(pid) - written_before[pid] for pid in workers)
    growth_kib = max(_status_kib(pid, "VmHWM") - rss_before[pid] for pid in workers)
    # Once: the parts' bytes reach the disk (at least the upload), but not twice.
    assert total <= written < 1.3 * total, (written, total)
    assert growth_kib * 1024 < total / 4, f"API peak RSS grew by {growth_kib} KiB for a {total} byte upload"
    # No spool file is left behind, and the staged files are whole: every part indexes.
    job = response.json()["job_id"]
    if opened:
        assert api.post(opened["close_url"]).status_code == 200
    report = wait_job(api, job, timeout_s=300)
    assert report["state"] == "completed" and report["done"] == PARTS, report
    assert not any((stack.settings.staging_dir / ".incoming").iterdir())
    for name, data in files:
        sha = hashlib.sha256(data).hexdigest()
        found = api.get(f"/images/{image_uuid(collection, sha)}")
        assert found.status_code == 200, (name, found.text)
        assert found.json()["sha256"] == sha


def test_refused_parts_leave_no_spool_file(api: Api, stack: LocalStack) -> None:
    collection = new_collection(api, "spool")
    parts = [
        ("files", ("notes.jpg", b"not an image at all", "image/jpeg")),
        ("files", ("empty.jpg", b"", "image/jpeg")),
    ]
    response = api.post(f"/collections/{collection}/images", files=parts)
    assert response.status_code == 400, response.text
    assert not any((stack.settings.staging_dir / ".incoming").iterdir())
