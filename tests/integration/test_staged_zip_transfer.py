"""Issue 23, item 14 over HTTP against the whole stack: a zip uploaded to a stack whose staging and blobs
live in the S3 object store (rclone serve s3) is read by its chunk tasks with ranged reads, so the bytes
the store sends while the job runs stay near one archive, not one archive per chunk.

The stack reaches the store through a byte-counting loopback TCP proxy (tests/integration/byte_proxy.py),
so what is measured is every byte the store answered to the API and the worker, headers included, with
nothing hooked inside the stack. This test starts its own stack (the session stack stages on disk).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from clipsearch.processes import free_port
from clipsearch.stack import LocalStack
from indexer.settings import Settings
from tests.imagegen import make_image, make_zip
from tests.integration.byte_proxy import CountingProxy, counting_proxy
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, object_store_server, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ENTRIES = 64
MAX_FETCHED_RATIO = 1.5  # of the archive's size; whole-archive reads per chunk would be >= the chunks' count


def _photo(seed: int) -> bytes:
    """A 1024x768 JPEG of about 240 KB: make_image's picture with sensor-like noise, so that it weighs
    what a camera's photo does (the blocks alone compress to a few KB)."""
    img = cv2.imdecode(np.frombuffer(make_image(seed, 1024, 768), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    noise = np.random.default_rng(seed).normal(0, 10, img.shape)
    noisy = np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(buf.tobytes())


@pytest.fixture()
def s3_stack(
    stack_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Api, CountingProxy]]:
    """A whole stack (Redis, Weaviate, a worker, the API) whose BLOB_STORE_ENDPOINT is the counting proxy
    in front of an rclone S3 server of its own."""
    with object_store_server(tmp_path) as server, counting_proxy(server.port) as proxy:
        for key, value in server.env().items():  # the stack's children read them from the environment
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("BLOB_STORE_ENDPOINT", proxy.endpoint)
        local = LocalStack(Settings(data_dir=tmp_path / "data", api_port=free_port()))
        assert local.object_store is None  # BLOB_STORE_URL is set: the stack uses this store
        local.start()
        try:
            local.wait_healthy(timeout_s=120)
            yield Api(local.api_url), proxy
        finally:
            local.stop()


def test_zip_staged_in_s3_is_fetched_about_once_whatever_the_chunks(
    s3_stack: tuple[Api, CountingProxy], stack_env: dict[str, str]
) -> None:
    """64 photos (15 MB, stored) in 8 chunks of 8: the store sends less than 1.5 archives while the job
    runs (each chunk downloading the whole archive, as before the fix, would be 8 archives)."""
    api, proxy = s3_stack
    chunks = math.ceil(ENTRIES / int(stack_env["INGEST_CHUNK_SIZE"]))
    assert chunks >= 6
    entries = {f"photos/{i:03d}.jpg": _photo(i) for i in range(ENTRIES)}
    archive = make_zip(entries, zipfile.ZIP_STORED)
    size = len(archive)
    payload = sum(len(data) for data in entries.values())
    name = new_collection(api)

    received_before, sent_before = proxy.counts()  # from here on: the upload, its staging and the job
    response = api.post(
        f"/collections/{name}/zip", files={"file": ("photos.zip", archive, "application/zip")}
    )
    assert response.status_code == 202, response.text
    report = wait_job(api, response.json()["job_id"], timeout_s=90)
    received, sent = proxy.counts()
    fetched, stored = received - received_before, sent - sent_before

    assert report["state"] == "completed", report
    assert (report["done"], report["failed"]) == (ENTRIES, 0), report
    print(
        f"zip of {size} bytes ({ENTRIES} entries, {payload} bytes in entries, {chunks} chunks): "
        f"the store sent {fetched} bytes while the job ran ({fetched / size:.3f} archives) "
        f"and received {stored}"
    )
    assert stored >= size, stored  # the archive was staged in the store, through the proxy
    assert fetched >= payload, fetched  # and the worker read every entry from it, through the proxy
    assert fetched < MAX_FETCHED_RATIO * size, f"{fetched} bytes fetched for an archive of {size}"
