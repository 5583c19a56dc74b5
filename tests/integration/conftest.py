"""The real stack, started once per test session: Weaviate, Redis, one Celery worker and the API."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from clipsearch.processes import free_port
from clipsearch.stack import LocalStack
from indexer.model.files import tiny_model_dir
from indexer.settings import Settings

# Bytes that kill the worker process that reads them (TEST_CRASH_SHA256 below): a PNG signature, so that the
# upload is accepted and the item reaches a worker.
POISON = b"\x89PNG\r\n\x1a\n" + b"clipsearch test poison: the worker dies on these bytes" * 4


class Api:
    """A small HTTP client bound to the stack's base URL."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.base + path, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: object) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one server-side folder root the stack allows."""
    return tmp_path_factory.mktemp("folders")


@pytest.fixture(scope="session")
def url_port() -> int:
    """The loopback port of the test image server, the one URL target the stack admits."""
    return free_port()


@pytest.fixture(scope="session")
def stack_env(
    tmp_path_factory: pytest.TempPathFactory, folder_root: Path, url_port: int
) -> Iterator[dict[str, str]]:
    """Environment for the stack and everything it starts: tiny model, private data dir, free ports."""
    data_dir = tmp_path_factory.mktemp("stack")
    env = {
        "FOLDER_ROOTS": str(folder_root),
        "URL_ALLOW": f"127.0.0.1:{url_port}",
        "URL_TIMEOUT_S": "3",  # test_security_urls: a slow server is cut within seconds
        "INGEST_CHUNK_SIZE": "8",
        "DATA_DIR": str(data_dir),
        "MODEL_DIR": str(tiny_model_dir()),
        "API_PORT": str(free_port()),
        "ONNX_THREADS": "1",
        "TASK_VISIBILITY_TIMEOUT_S": "10",
        # Ingest tasks of 8 items: soft limit 34 s, hard 44 s, so the broker re-delivers a dead worker's
        # task after 74 s (the visibility timeout is raised above the hard limit; test_crash waits for it).
        "TASK_TIME_LIMIT_BASE_S": "10",
        "TASK_TIME_LIMIT_PER_ITEM_S": "3",
        # Decodes past 3 s of CPU fail (DECODE_MAX_CPU_S; a 64 MP PNG of test_ingest_pipeline.py takes
        # 0.5 to 0.9 s), and the scans x pixels check is off, so that a scan bomb under JPEG_MAX_SCANS
        # (raised to 3000: a 62 MP bomb of 2000 scans costs about 9 s of CPU) reaches the decode pool
        # (test_security_untrusted.py).
        "DECODE_MAX_CPU_S": "3",
        "JPEG_MAX_SCANS": "3000",
        "JPEG_MAX_SCAN_PIXELS": str(10**15),
        # Open upload jobs (test_security_staging.py): at most 20 open, an idle one expires after 8 s
        # (swept every 0.5 s). Other tests append and close within seconds of opening.
        "MAX_OPEN_JOBS": "20",
        "OPEN_JOB_IDLE_S": "8",
        "OPEN_JOB_SWEEP_S": "0.5",
        # Raw bytes of a chunk's items in flight (test_untrusted_files.py: 8 zip entries of 24 MiB).
        "INGEST_MAX_BYTES_IN_FLIGHT": str(32 * 1024 * 1024),
        # TEST ONLY: a worker process that reads these bytes kills itself (test_ingest_pipeline.py).
        "TEST_CRASH_SHA256": hashlib.sha256(POISON).hexdigest(),
    }
    for key in ("WEAVIATE_URL", "REDIS_URL", "API_KEYS"):
        os.environ.pop(key, None)
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    yield env
    mp.undo()


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> Iterator[LocalStack]:
    local = LocalStack(Settings())
    local.start()
    try:
        local.wait_healthy(timeout_s=120)
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Api:
    return Api(stack.api_url)


@pytest.fixture(scope="session")
def settings(stack: LocalStack) -> Settings:
    return stack.settings.model_copy(
        update={
            "redis_url": stack.redis_url,
            "weaviate_url": stack.weaviate_url,
            "weaviate_grpc_port": stack.weaviate_grpc_port,
        }
    )


@pytest.fixture()
def data_root(stack: LocalStack) -> Path:
    return stack.settings.data_dir
