"""Shared steps for the integration tests: create a collection, upload, wait for a job."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from clipsearch.object_store_server import ObjectStoreServer, object_store_binary
from clipsearch.processes import LOOPBACK, free_port
from indexer.settings import Settings
from tests.integration.conftest import Api


def new_collection(api: Api, prefix: str = "c") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    response = api.post("/collections", json={"name": name})
    assert response.status_code == 201, response.text
    return name


def upload(api: Api, collection: str, files: list[tuple[str, bytes]], **form: str) -> dict[str, Any]:
    parts = [("files", (name, data, "image/jpeg")) for name, data in files]
    response = api.post(f"/collections/{collection}/images", files=parts, data=form)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_job(api: Api, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    """The job's report once it has ended: each request waits on the server for up to 5 s (long polling),
    and a request the server answered without waiting (too many waiters) is followed by a short pause."""
    deadline = time.monotonic() + timeout_s
    while True:
        report: dict[str, Any] = api.get(f"/jobs/{job_id}", params={"wait": 5}).json()
        if report["state"] in {"completed", "failed", "cancelled"}:
            return report
        assert time.monotonic() < deadline, f"job did not finish: {report}"
        time.sleep(0.05)


@contextlib.contextmanager
def serve_in_thread(app: Flask) -> Iterator[str]:
    """`app` on a werkzeug server in a thread (real HTTP on loopback); yields its base URL."""
    port = free_port()
    server = make_server(LOOPBACK, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextlib.contextmanager
def object_store_server(root: Path) -> Iterator[ObjectStoreServer]:
    """An rclone S3 server of the test's own (data and logs under ``root``), stopped on exit."""
    binary = object_store_binary(Settings())
    if not binary.is_file():
        pytest.fail("object store binary missing: run scripts/build_object_store.sh (setup.sh does)")
    server = ObjectStoreServer(binary, root / "s3", root / "logs")
    server.start()
    try:
        yield server
    finally:
        server.stop()
