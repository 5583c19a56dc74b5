"""Metrics and logs over the live stack: /metrics after a real job, the request id from the API's
response into the worker's JSON log lines, and a worker's own exporter on its loopback port."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
import requests

from clipsearch.processes import free_port
from clipsearch.stack import LocalStack
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.integration


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text format (labels matched as a subset)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def total(text: str, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    out = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                out += float(line.rsplit(" ", 1)[1])
    return out


def test_metrics_after_a_job(api: Api) -> None:
    before = api.get("/metrics").text
    indexed_before = sample(before, "clipsearch_images_indexed_total", source="workers") or 0.0
    failed_before = sample(before, "clipsearch_images_failed_total", source="workers") or 0.0

    collection = new_collection(api, "met")
    files = [(f"m{i}.jpg", make_image(800 + i)) for i in range(3)] + [("broken.jpg", b"\xff\xd8not a jpeg")]
    job = upload(api, collection, files)
    report = wait_job(api, job["job_id"])
    assert (report["done"], report["failed"]) == (3, 1), report
    api.post("/search/text", json={"collection": collection, "query": "anything"})

    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    # Images indexed and failed, counted in the worker's pool processes, summed by the API.
    assert sample(text, "clipsearch_images_indexed_total", source="workers") == indexed_before + 3
    assert sample(text, "clipsearch_images_failed_total", source="workers") == failed_before + 1
    # Request latency per URL rule (not per concrete path).
    assert (
        sample(text, "clipsearch_http_request_duration_seconds_count", route="/collections/<name>/images")
        or 0
    ) >= 1
    assert (sample(text, "clipsearch_http_request_duration_seconds_count", route="/search/text") or 0) >= 1
    assert f"/collections/{collection}/images" not in text
    # Queue depth and jobs by state, read from Redis at scrape time.
    assert sample(text, "clipsearch_redis_up") == 1.0
    assert sample(text, "clipsearch_queue_depth", queue="clipsearch") is not None
    assert (sample(text, "clipsearch_jobs", state="completed") or 0) >= 1
    for state in ("queued", "running", "failed", "cancelled"):
        assert sample(text, "clipsearch_jobs", state=state) is not None, state
    # Model inference time per batch: recorded where the model runs (the worker for ingest, the API
    # for text queries): the sessions call indexer.metrics.time_inference.
    worker_batches = total(text, "clipsearch_inference_seconds_count", source="workers")
    assert worker_batches >= 1
    assert total(text, "clipsearch_inference_seconds_count", source="api") >= 1  # the text query
    assert total(text, "clipsearch_inference_batch_items_count", source="workers") == worker_batches
    api.delete(f"/collections/{collection}")


def _json_lines(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_request_id_follows_the_job_into_the_worker(api: Api, stack: LocalStack) -> None:
    collection = new_collection(api, "rid")
    rid = f"trace-{uuid.uuid4().hex}"
    response = api.post(
        f"/collections/{collection}/images",
        files=[("files", ("r.jpg", make_image(850), "image/jpeg"))],
        headers={"X-Request-ID": rid},
    )
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == rid
    assert wait_job(api, response.json()["job_id"])["state"] == "completed"

    api_lines = [e for e in _json_lines(stack.log_dir / "api.log") if e.get("request_id") == rid]
    assert any(e.get("logger") == "clipsearch.access" and e.get("status") == 202 for e in api_lines), (
        api_lines
    )

    deadline = time.monotonic() + 10
    worker_lines: list[dict[str, object]] = []
    while time.monotonic() < deadline and not worker_lines:
        worker_lines = [
            e
            for log in stack.log_dir.glob("worker-*.log")
            for e in _json_lines(log)
            if e.get("request_id") == rid
        ]
        time.sleep(0.2)
    assert worker_lines, "no worker log line carries the request id"
    assert all(e.get("service") == "worker" for e in worker_lines)
    assert any(e.get("task") == "clipsearch.ingest_chunk" and e.get("task_id") for e in worker_lines), (
        worker_lines
    )
    # A request without the header gets a fresh id, echoed back.
    fresh = api.get("/collections")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["X-Request-ID"])
    api.delete(f"/collections/{collection}")


def test_a_worker_serves_its_own_metrics(
    api: Api, stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second worker with WORKER_METRICS_PORT set; the session's worker steps aside meanwhile so
    that the job surely lands on the new one."""
    port = free_port()
    monkeypatch.setenv("WORKER_METRICS_PORT", str(port))
    extra = stack.start_worker()
    monkeypatch.delenv("WORKER_METRICS_PORT")
    originals = [proc for proc in stack.workers if proc is not extra]
    for proc in originals:
        proc.stop()
        stack.workers.remove(proc)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert requests.get(url, timeout=10).status_code == 200
        collection = new_collection(api, "wm")
        job = upload(api, collection, [(f"w{i}.jpg", make_image(870 + i)) for i in range(2)])
        assert wait_job(api, job["job_id"])["state"] == "completed"
        text = requests.get(url, timeout=10).text
        assert sample(text, "clipsearch_images_indexed_total") == 2.0, text
        api.delete(f"/collections/{collection}")
    finally:
        stack.start_worker()
        extra.stop()
        stack.workers.remove(extra)
        stack.wait_healthy(timeout_s=60)
