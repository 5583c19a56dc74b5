"""The API under gunicorn with two processes and PROMETHEUS_MULTIPROC_DIR: every scrape reports the
requests of both processes, whichever one answers it. Needs no stack (Redis is down on purpose)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import requests

from clipsearch.processes import LOOPBACK, ManagedProcess, free_port

pytestmark = pytest.mark.integration

REQUESTS = 40


def _count(text: str, route: str) -> float:
    series = r"clipsearch_http_request_duration_seconds_count\{[^}]*"
    pattern = series + f'route="{re.escape(route)}"' + r"[^}]*\} (\S+)"
    return sum(float(value) for value in re.findall(pattern, text))


def test_two_gunicorn_processes_share_their_request_metrics(tmp_path: Path) -> None:
    shared = tmp_path / "api-metrics"
    shared.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("API_KEYS", None)
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"{LOOPBACK}:{port}", "--workers", "2"]
    argv += ["--threads", "2", "search_api.wsgi:app"]
    api = ManagedProcess("api-2p", argv, tmp_path / "api.log", env=env)
    api.start()
    try:
        base = f"http://{LOOPBACK}:{port}"
        api.wait_ready(lambda: requests.get(base + "/openapi.json", timeout=5).status_code == 200, 60)
        # A readiness probe that timed out on the client under load still counts on the server: start
        # from what the server has counted so far.
        before = _count(requests.get(base + "/metrics", timeout=10).text, "/openapi.json")
        assert before >= 1
        for _ in range(REQUESTS):
            with requests.Session() as fresh:  # a new connection each time: either process may take it
                assert fresh.get(base + "/openapi.json", timeout=10).status_code == 200
        pids = {name.rsplit("_", 1)[1] for name in os.listdir(shared) if name.startswith("histogram_")}
        print("processes that answered:", len(pids))
        assert pids, os.listdir(shared)
        for _ in range(6):
            with requests.Session() as fresh:
                text = fresh.get(base + "/metrics", timeout=10).text
            assert _count(text, "/openapi.json") == before + REQUESTS, text[-2000:]
            assert "clipsearch_images_indexed_total" in text
            assert text.count("# TYPE clipsearch_http_request_duration_seconds histogram") == 1
    finally:
        api.stop()
