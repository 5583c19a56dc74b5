"""Dependency outages over HTTP against the real stack: Redis goes away for a few seconds.

The managed redis-server is stopped (SIGTERM: its append-only file is flushed) and started again on the
same port and data directory, so every job record survives; the restart is in a `finally`, so the
session's stack is never left broken.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clipsearch.cli import main as cli_main
from clipsearch.client import ApiClient, image_files
from clipsearch.stack import LocalStack
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.integration

OUTAGE_S = 3.0


@contextlib.contextmanager
def redis_down(stack: LocalStack) -> Iterator[None]:
    server = stack.redis
    assert server is not None, "the test stack runs its own redis-server"
    server.stop()
    try:
        yield
    finally:
        # Same port, same data dir (redis-server sets SO_REUSEADDR, so the port is free at once).
        server.process.start()
        server.process.wait_ready(server.ready, 30)


def _wait_ok(api: Api, path: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        response = api.get(path)
        if response.status_code == 200:
            return response.json()
        assert time.monotonic() < deadline, f"{path} still {response.status_code}: {response.text}"
        time.sleep(0.2)


def _assert_unavailable(response: Any, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "dependency_unavailable"
    assert error["details"]["dependency"] == dependency


def test_redis_outage_is_503_with_retry_after_then_200(api: Api, stack: LocalStack) -> None:
    name = new_collection(api, "outage")
    job_id = upload(api, name, [("a.jpg", make_image(9100)), ("b.jpg", make_image(9101))])["job_id"]
    before = wait_job(api, job_id)
    assert before["state"] == "completed" and before["done"] == 2
    staging = stack.settings.staging_dir
    staged_before = set(staging.iterdir()) if staging.is_dir() else set()
    with redis_down(stack):
        _assert_unavailable(api.get(f"/jobs/{job_id}"), "redis")
        _assert_unavailable(api.get("/jobs"), "redis")
        _assert_unavailable(api.delete(f"/jobs/{job_id}"), "redis")
        refused = api.post(
            f"/collections/{name}/images", files=[("files", ("c.jpg", make_image(9102), "image/jpeg"))]
        )
        _assert_unavailable(refused, "redis")
        # The refused upload left nothing staged behind.
        assert (set(staging.iterdir()) if staging.is_dir() else set()) == staged_before
        metrics = api.get("/metrics")
        assert metrics.status_code == 200 and "clipsearch_redis_up 0.0" in metrics.text
        # Weaviate still answers: routes that need only it keep working.
        assert api.get(f"/collections/{name}").status_code == 200
    after = _wait_ok(api, f"/jobs/{job_id}")
    assert {k: after[k] for k in ("state", "done", "total", "failed")} == {
        k: before[k] for k in ("state", "done", "total", "failed")
    }
    # And the stack works end to end again: a new upload is indexed.
    again = wait_job(api, upload(api, name, [("c.jpg", make_image(9102))])["job_id"])
    assert again["state"] == "completed" and again["done"] == 1


def _images(root: Path, count: int, seed: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"img{i:02d}.jpg").write_bytes(make_image(seed + i))
    return list(image_files(root))


def test_cli_follow_survives_a_redis_outage(api: Api, stack: LocalStack, tmp_path: Path) -> None:
    """The CLI's job polling meets 503s for a few seconds and keeps following until the jobs finish."""
    name = new_collection(api, "outage-cli")
    paths = _images(tmp_path / "imgs", 10, 9200)
    client = ApiClient(api.base, retry_for_s=60)
    jobs, refused = client.upload_paths(name, tmp_path / "imgs", paths)
    chunk = api.get("/uploads/limits").json()["chunk_size"]  # the CLI sends one chunk per request
    assert len(jobs) == -(-len(paths) // chunk) and refused == []
    result: dict[str, Any] = {}

    def follow() -> None:
        try:
            result["reports"] = client.follow(jobs, len(paths), show=False)
        except BaseException as exc:  # surfaced below
            result["error"] = exc

    with redis_down(stack):
        thread = threading.Thread(target=follow, daemon=True)
        thread.start()  # its first poll meets the outage
        time.sleep(OUTAGE_S)
        assert thread.is_alive(), f"the CLI stopped during the outage: {result}"
    thread.join(timeout=90)
    assert not thread.is_alive() and "error" not in result, result
    reports = result["reports"]
    assert all(r["state"] == "completed" for r in reports), reports
    assert sum(r["done"] for r in reports) == len(paths)


def test_cli_index_survives_a_redis_outage(
    api: Api, stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`clipsearch index` started while Redis is down: its upload is a 503, retried with backoff (the
    server's Retry-After) until Redis is back, and the whole import succeeds."""
    name = f"outage-idx-{time.monotonic_ns() % 10**8}"
    root = tmp_path / "folder"
    paths = _images(root, 6, 9300)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["code"] = cli_main(["index", str(root), "--collection", name, "--url", api.base])
        except BaseException as exc:
            result["error"] = exc

    with redis_down(stack):
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(OUTAGE_S)
        assert thread.is_alive(), f"the CLI gave up during the outage: {result}"
    thread.join(timeout=120)
    assert not thread.is_alive() and "error" not in result, result
    out = capsys.readouterr().out
    assert result["code"] == 0, out
    assert f"indexed {len(paths)}, duplicates 0, failed 0" in out
    assert api.get(f"/collections/{name}").json()["count"] == len(paths)


def test_cli_does_not_retry_a_client_error(api: Api) -> None:
    """A 4xx is an answer, not an outage: the client fails at once instead of retrying."""
    client = ApiClient(api.base, retry_for_s=60)
    started = time.monotonic()
    with pytest.raises(Exception, match="unknown job"):
        client.call("GET", "/jobs/" + "0" * 32)
    assert time.monotonic() - started < 5
