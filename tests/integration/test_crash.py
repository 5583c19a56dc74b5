"""SIGKILL a worker in the middle of a job: a new worker finishes it, and every image is stored once."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from clipsearch.stack import LocalStack
from indexer.settings import Settings
from indexer.store.connection import connect
from indexer.store.images import ImageStore
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.integration
IMAGES = 96


def test_job_survives_worker_sigkill_and_indexes_each_image_once(
    api: Api, stack: LocalStack, settings: Settings
) -> None:
    name = new_collection(api, "crash")
    files = [(f"k{i:03d}.jpg", make_image(2000 + i, 1024, 768)) for i in range(IMAGES)]
    job = upload(api, name, files)["job_id"]
    deadline = time.monotonic() + 60
    while api.get(f"/jobs/{job}").json()["processed"] < 8:  # at least one chunk done, more in flight
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim = stack.workers[0]
    assert victim.pid is not None
    os.killpg(victim.pid, signal.SIGKILL)  # the worker and its pool: nothing acknowledges the chunk
    stack.workers.remove(victim)
    stack.start_worker()

    report = wait_job(api, job, timeout_s=180)
    assert report["state"] == "completed", report
    assert (report["done"], report["failed"], report["duplicates"]) == (IMAGES, 0, 0)

    client = connect(settings)
    try:
        store = ImageStore(client, api.get(f"/collections/{name}").json()["model_id"])
        shas = Counter(
            str(obj.properties["sha256"])
            for obj in store.collection.iterator(return_properties=["sha256", "collection"])
            if obj.properties["collection"] == name
        )
        assert len(shas) == IMAGES and set(shas.values()) == {1}
        assert store.count(name) == IMAGES
    finally:
        client.close()
