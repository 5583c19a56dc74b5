"""The running spine: health, a real Celery round trip, crash detection and clear start-up failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from clipsearch.processes import LOOPBACK, free_port
from clipsearch.redis_server import RedisServer
from clipsearch.stack import LocalStack
from clipsearch.weaviate_server import WeaviatePorts, WeaviateServer
from indexer.errors import StartupError
from indexer.settings import Settings
from tests.integration.conftest import Api
from workers.celery_factory import make_celery

pytestmark = pytest.mark.integration


def test_health_reports_every_part_ready_with_versions(api: Api) -> None:
    response = api.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    parts = body["parts"]
    assert set(parts) == {"weaviate", "redis", "workers", "model"}
    assert all(part["ready"] for part in parts.values())
    assert parts["weaviate"]["version"] == Settings().weaviate_version
    assert parts["redis"]["version"].count(".") == 2
    assert parts["workers"]["count"] == 1
    assert parts["model"]["model_id"]


def test_celery_round_trip_through_redis(settings: Settings) -> None:
    # No result backend (nothing reads results): the broker's control channel answers instead.
    celery = make_celery(settings)
    replies = celery.control.ping(timeout=5)
    assert replies and all(reply == {"ok": "pong"} for answer in replies for reply in answer.values())


def test_unknown_route_is_json_404(api: Api) -> None:
    response = api.get("/no/such/route")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_worker_sigkill_is_reported_down_within_10s(api: Api, stack: LocalStack) -> None:
    victim = stack.workers[0]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    started = time.monotonic()
    while True:
        response = api.get("/health")
        if response.status_code == 503 and not response.json()["parts"]["workers"]["ready"]:
            break
        assert time.monotonic() - started < 10, "worker death not reported within 10 s"
        time.sleep(0.2)
    assert response.json()["status"] == "unavailable"
    # Clean up the orphaned pool processes, then bring a new worker so later tests have one.
    os.killpg(victim.pid, signal.SIGKILL)
    stack.workers.remove(victim)
    stack.start_worker()
    stack.wait_healthy(timeout_s=30)


def _listening_socket() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def test_taken_redis_port_fails_fast_and_names_it(tmp_path: Path) -> None:
    sock, port = _listening_socket()
    with sock:
        server = RedisServer(tmp_path / "redis", tmp_path / "logs", port=port)
        started = time.monotonic()
        with pytest.raises(StartupError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start()
        assert time.monotonic() - started < 5


def test_taken_weaviate_grpc_port_fails_fast_and_names_it(tmp_path: Path) -> None:
    sock, port = _listening_socket()
    with sock:
        server = WeaviateServer(
            Settings().weaviate_binary_path, tmp_path / "wv", tmp_path / "logs", WeaviatePorts(grpc=port)
        )
        with pytest.raises(StartupError, match=f"Weaviate gRPC: port {port} .* already in use|port {port}"):
            server.start()
        assert not server.process.alive()


def test_unwritable_weaviate_data_dir_fails_and_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    server = WeaviateServer(Settings().weaviate_binary_path, blocker / "data", tmp_path / "logs")
    with pytest.raises(StartupError, match=r"data directory .*not-a-dir/data is not writable"):
        server.start()
    assert not server.process.alive()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_read_only_weaviate_data_dir_fails_and_names_it(tmp_path: Path) -> None:  # pragma: no cover
    data = tmp_path / "ro"
    data.mkdir(mode=0o500)
    server = WeaviateServer(Settings().weaviate_binary_path, data, tmp_path / "logs")
    with pytest.raises(StartupError, match="is not writable"):
        server.start()


def test_taken_api_port_fails_before_anything_starts(tmp_path: Path) -> None:
    sock, port = _listening_socket()
    with sock:
        settings = Settings(data_dir=tmp_path, api_port=port)
        stack = LocalStack(settings)
        with pytest.raises(StartupError, match=f"the API: port {port}"):
            stack.start()
        assert not any(proc.alive() for proc in stack.processes())


def test_clipsearch_up_serves_health_and_stops_on_ctrl_c(tmp_path: Path, stack_env: dict[str, str]) -> None:
    port = free_port()
    env = dict(os.environ, DATA_DIR=str(tmp_path), API_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipsearch.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "clipsearch is up" in line:
                break
            assert time.monotonic() < deadline
        assert "clipsearch is up" in seen[-1], "".join(seen)
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert health.status_code == 200
        assert all(part["ready"] for part in health.json()["parts"].values())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
