"""The ingest pipeline over the real stack: memory bounded by the batch, not by the images; a poison item
(one that kills its worker process every time) is isolated and failed while the rest index once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from clipsearch.stack import LocalStack
from indexer.settings import Settings
from indexer.store.connection import connect
from indexer.store.images import ImageStore
from tests.imagegen import make_image
from tests.integration.conftest import POISON, Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.integration
MAX_WORKER_RSS = 1200 * 1024 * 1024  # bytes


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _pool_pids(stack: LocalStack) -> list[int]:
    """The Celery pool processes (children of each worker's main process): where tasks run."""
    pids = []
    for worker in stack.workers:
        assert worker.pid is not None
        children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
        pids += [int(c) for c in children]
    assert pids, "no worker pool process"
    return pids


def _tree_peak(pid: int) -> int:
    """Peak resident bytes of a process plus those of its descendants (the worker's decode processes,
    issue 23, decode the images): a sum of peaks, so never less than what they held at once."""
    children = [c for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
    return _status_kb(pid, "VmHWM") * 1024 + sum(_tree_peak(int(c)) for c in children)


def _shas(settings: Settings, api: Api, name: str) -> Counter[str]:
    client = connect(settings)
    try:
        store = ImageStore(client, api.get(f"/collections/{name}").json()["model_id"])
        return Counter(
            str(obj.properties["sha256"])
            for obj in store.collection.iterator(return_properties=["sha256", "collection"])
            if obj.properties["collection"] == name
        )
    finally:
        client.close()


def test_twelve_8000px_pngs_in_one_upload_index_within_bounded_worker_memory(
    api: Api, stack: LocalStack, settings: Settings
) -> None:
    name = new_collection(api, "hugepng")
    files = [(f"huge{i:02d}.png", make_image(9100 + i, 8000, 8000, ".png")) for i in range(12)]
    job = upload(api, name, files)["job_id"]
    report = wait_job(api, job, timeout_s=300)
    assert report["state"] == "completed", report
    assert (report["done"], report["failed"], report["duplicates"]) == (12, 0, 0), report
    assert sum(_shas(settings, api, name).values()) == 12
    hits = api.post("/search/text", json={"collection": name, "query": "a picture", "limit": 20}).json()
    assert hits["count"] == 12
    for hit in hits["results"]:  # the original's size is recorded, not the reduced decode's
        assert (hit["width"], hit["height"]) == (8000, 8000), hit
    peaks = {pid: _tree_peak(pid) for pid in _pool_pids(stack)}
    print(f"worker pool peak RSS (VmHWM, with its decode processes): {max(peaks.values()) / 2**20:.0f} MiB")
    # 8000x8000 RGB is 192 MB; held by each of 12 images (or turned into float planes) it would be GBs
    assert max(peaks.values()) < MAX_WORKER_RSS, {p: f"{v / 2**20:.0f} MiB" for p, v in peaks.items()}


def test_item_that_kills_its_worker_every_time_is_failed_and_the_rest_index_once(
    api: Api, stack: LocalStack, settings: Settings
) -> None:
    name = new_collection(api, "poison")
    normal = [(f"p{i:02d}.jpg", make_image(9300 + i, 400, 300)) for i in range(10)]
    files = [*normal[:3], ("poison.png", POISON), *normal[3:]]  # chunks of 8: the poison is in the first
    pools_before = set(_pool_pids(stack))
    started = time.monotonic()
    job = upload(api, name, files)["job_id"]
    report = wait_job(api, job, timeout_s=240)
    assert report["state"] == "completed", report
    assert (report["done"], report["failed"], report["duplicates"]) == (10, 1, 0), report
    [error] = report["errors"]
    assert error["file"] == "poison.png"
    assert "worker process died while processing this item" in error["reason"], error
    shas = _shas(settings, api, name)
    assert len(shas) == 10 and set(shas.values()) == {1}
    # the worker really died on it (a new pool process runs now), and the job did not wait for a timeout
    assert not pools_before & set(_pool_pids(stack))
    assert time.monotonic() - started < 240
