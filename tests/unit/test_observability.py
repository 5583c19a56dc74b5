"""Logs, request ids, metrics collectors and the worker's signal hooks, without the stack."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from indexer import metrics
from indexer.logs import (
    TASK_HEADER,
    JsonFormatter,
    RequestIdFilter,
    bind_context,
    clean_request_id,
    configure_logging,
    reset_context,
    reset_request_id,
    set_request_id,
)
from indexer.settings import Settings
from search_api.app import create_app
from workers import observability

REPO = Path(__file__).resolve().parents[2]


def _record(msg: str = "hello", **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("clipsearch.test", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_carries_request_id_context_and_extra() -> None:
    token = set_request_id("req-1")
    ctx = bind_context(task_id="t-9", task="clipsearch.ingest_chunk")
    try:
        line = JsonFormatter(service="worker").format(_record("indexed %d", images=3))
    finally:
        reset_context(ctx)
        reset_request_id(token)
    entry = json.loads(line)
    assert entry["message"] == "indexed %d"  # no args: message is the raw text
    assert entry["request_id"] == "req-1"
    assert entry["task_id"] == "t-9"
    assert entry["task"] == "clipsearch.ingest_chunk"
    assert entry["images"] == 3
    assert entry["service"] == "worker"
    assert entry["level"] == "info"
    assert entry["ts"].endswith("+00:00")


def test_json_formatter_includes_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exc"]
    assert entry["request_id"] is None


def test_configure_logging_is_idempotent_and_keeps_other_handlers() -> None:
    root = logging.getLogger()
    before = [h for h in root.handlers if h.get_name() != "clipsearch-json"]
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=io.StringIO())
    configure_logging("INFO", "json", service="api", stream=stream)
    ours = [h for h in root.handlers if h.get_name() == "clipsearch-json"]
    assert len(ours) == 1
    assert [h for h in root.handlers if h.get_name() != "clipsearch-json"] == before
    logging.getLogger("clipsearch.test").info("one line")
    assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "one line"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", True),
        ("", False),
        ("has space", False),
        ("x" * 129, False),
        ("line\nbreak", False),
        ("<script>", False),
    ],
)
def test_clean_request_id(given: str, kept: bool) -> None:
    assert (clean_request_id(given) == given) is kept


# -- the API side ------------------------------------------------------------------------------------
@pytest.fixture()
def app_settings(tmp_path: Path) -> Settings:
    # Nothing listens on port 1: Redis-backed gauges must degrade, not fail.
    return Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")


def test_request_id_is_echoed_or_generated(app_settings: Settings) -> None:
    client = create_app(app_settings).test_client()
    given = client.get("/openapi.json", headers={"X-Request-ID": "trace-42"})
    assert given.headers["X-Request-ID"] == "trace-42"
    fresh = client.get("/openapi.json", headers={"X-Request-ID": "bad id with spaces"})
    assert fresh.headers["X-Request-ID"] != "bad id with spaces"
    assert len(fresh.headers["X-Request-ID"]) == 32


def test_access_log_line_is_json_with_route_and_request_id(
    app_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    client = create_app(app_settings).test_client()
    client.get("/jobs/some-job", headers={"X-Request-ID": "trace-7"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    access = [e for e in lines if e["logger"] == "clipsearch.access"]
    assert access, lines
    assert access[-1]["request_id"] == "trace-7"
    assert access[-1]["route"] == "/jobs/<job_id>"
    assert access[-1]["path"] == "/jobs/some-job"
    assert isinstance(access[-1]["duration_ms"], float)


def test_metrics_endpoint_labels_by_rule_and_survives_redis_down(app_settings: Settings) -> None:
    client = create_app(app_settings).test_client()
    client.get("/openapi.json")
    client.get("/no/such/thing")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    series = 'clipsearch_http_request_duration_seconds_count{method="GET",route="/openapi.json",status="200"}'
    assert f"{series} 1.0" in text
    assert 'route="<unmatched>",status="404"' in text
    assert "clipsearch_redis_up 0.0" in text
    assert "clipsearch_images_indexed_total" in text
    assert "process_cpu_seconds_total" in text


def test_two_apps_in_one_process_do_not_collide(app_settings: Settings) -> None:
    create_app(app_settings)
    create_app(app_settings)  # would raise "Duplicated timeseries" with a shared registry


# -- worker metrics: the multiprocess files and the merge --------------------------------------------
_CHILD = textwrap.dedent(
    """
    from indexer import metrics
    metrics.images_indexed(5)
    metrics.images_failed(2)
    metrics.observe_inference("image", 0.2, 8)
    """
)


def _run_child(mp_dir: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", _CHILD], env=env, check=True, cwd=REPO)


def test_indexer_collector_sums_worker_files_and_labels_sources(tmp_path: Path) -> None:
    root = tmp_path / "workers"
    for worker in ("hostA-1", "hostA-2"):
        (root / worker).mkdir(parents=True)
        _run_child(root / worker)
    local = CollectorRegistry()
    Counter("clipsearch_images_indexed", "local", registry=local).inc(1)
    registry = CollectorRegistry()
    registry.register(metrics.IndexerCollector(local, root))
    text = generate_latest(registry).decode()
    assert 'clipsearch_images_indexed_total{source="api"} 1.0' in text
    assert 'clipsearch_images_indexed_total{source="workers"} 10.0' in text
    assert 'clipsearch_images_failed_total{source="workers"} 4.0' in text
    assert 'clipsearch_inference_seconds_count{encoder="image",source="workers"} 2.0' in text
    assert 'clipsearch_inference_batch_items_bucket{encoder="image",le="8.0",source="workers"} 2.0' in text
    # One family per name, whatever the number of sources.
    assert text.count("# TYPE clipsearch_images_indexed_total counter") <= 1
    assert text.count("# TYPE clipsearch_images_indexed counter") <= 1


def test_time_inference_records_a_batch() -> None:
    before = metrics.INFERENCE_SECONDS.labels(encoder="text")._sum.get()  # type: ignore[attr-defined]
    with metrics.time_inference("text", 4):
        pass
    after = metrics.INFERENCE_SECONDS.labels(encoder="text")._sum.get()  # type: ignore[attr-defined]
    assert after >= before


def test_stale_worker_dirs_are_removed_live_ones_kept(tmp_path: Path) -> None:
    import socket

    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / f"{host}-{os.getpid()}"
    gone = tmp_path / f"{host}-{dead.pid}"
    other_host = tmp_path / f"elsewhere-{dead.pid}"
    for path in (live, gone, other_host):
        path.mkdir()
    removed = observability.remove_stale_metric_dirs(tmp_path)
    assert removed == [gone]
    assert live.is_dir() and other_host.is_dir() and not gone.exists()


def test_publish_hook_copies_request_id_into_headers() -> None:
    headers: dict[str, object] = {}
    token = set_request_id("req-77")
    try:
        observability._add_request_id(headers=headers)
    finally:
        reset_request_id(token)
    assert headers == {TASK_HEADER: "req-77"}
    untouched: dict[str, object] = {}
    observability._add_request_id(headers=untouched)  # no request id: nothing added
    assert untouched == {}


def test_task_hooks_restore_and_clear_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from indexer.logs import get_request_id

    task = SimpleNamespace(name="clipsearch.ingest_chunk", request=SimpleNamespace(**{TASK_HEADER: "req-5"}))
    assert observability.task_request_id(task) == "req-5"
    caplog.set_level(logging.INFO, logger="clipsearch.task")
    caplog.handler.addFilter(RequestIdFilter())
    observability._restore_request_id(task_id="t-1", task=task, args=["job", 0, 8, "x" * 500])
    assert get_request_id() == "req-5"
    observability._forget_request_id(task_id="t-1", state="SUCCESS")
    assert get_request_id() is None
    started, finished = (r for r in caplog.records if r.name == "clipsearch.task")
    assert started.request_id == "req-5"  # type: ignore[attr-defined]
    assert started.task_args == ["job", 0, 8, "…"]  # type: ignore[attr-defined]
    assert finished.state == "SUCCESS" and finished.duration_ms >= 0  # type: ignore[attr-defined]
    # Headers that came as a dict (older message protocol) work too; no header gives None.
    legacy = SimpleNamespace(request=SimpleNamespace(headers={TASK_HEADER: "req-6"}))
    assert observability.task_request_id(legacy) == "req-6"
    assert observability.task_request_id(SimpleNamespace(request=SimpleNamespace())) is None
