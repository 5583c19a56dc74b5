"""No job hangs (issue 25): one ingest of 1,000 images while the worker, then Weaviate, then Redis (with
its append-only log) are SIGKILLed and restarted, three times in a row on the same stack. Every job must
end within a bound and every image be stored exactly once.

Before the sweeper (indexer/services/recovery.py), a chunk delivered to the killed worker, or written to
the broker just before Redis died, was lost for good and its job stayed `running`. The test owns its
stack (LocalStack) and drives the kills itself on the processes it started; the stall bound is short
here (JOB_STALL_S=8, swept every 2 s) so that a lost chunk comes back within seconds.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from clipsearch.processes import ManagedProcess, free_port
from clipsearch.stack import LocalStack
from clipsearch.weaviate_server import WeaviateServer
from indexer.settings import Settings
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload

pytestmark = pytest.mark.timeout(600)

IMAGES = 1000
JOBS = 4
ROUNDS = 3
STALL_S = 8
# After the last restart, every job must end within this: the stall bound, a sweep, and the re-run
# of whatever was lost (on 2 shared cores, with the tiny model).
END_BOUND_S = 120
RECOVERY_ENV = {
    "INGEST_CHUNK_SIZE": "16",
    "JOB_STALL_S": str(STALL_S),
    "JOB_SWEEP_INTERVAL_S": "2",
    "TASK_OUTAGE_RETRY_S": "20",
    "WORKER_HEARTBEAT_S": "1",
}


@pytest.fixture(scope="module")
def recovery_stack(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    mp = pytest.MonkeyPatch()
    for key, value in RECOVERY_ENV.items():
        mp.setenv(key, value)
    local = LocalStack(Settings(data_dir=tmp_path_factory.mktemp("recovery"), api_port=free_port()))
    try:
        local.start()
        local.wait_healthy(timeout_s=120)
        yield local
    finally:
        local.stop()
        mp.undo()


def _kill(proc: ManagedProcess) -> None:
    """SIGKILL the process and everything in its session (a worker's pool processes too)."""
    assert proc.process is not None and proc.process.poll() is None, proc.name
    os.killpg(proc.process.pid, signal.SIGKILL)
    proc.process.wait(10)


def _report(api: Api, job_id: str) -> dict[str, Any] | None:
    """The job's report, or None while the API answers 503 (Redis down)."""
    try:
        response = api.get(f"/jobs/{job_id}", params={"wait": 2}, timeout=15)
    except requests.RequestException:
        return None
    if response.status_code == 503:
        assert response.headers.get("Retry-After"), response.text
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _stored_shas(api: Api, name: str) -> list[str]:
    shas: list[str] = []
    while True:
        page = api.get(f"/collections/{name}/images", params={"limit": 100, "offset": len(shas)}).json()
        shas.extend(img["sha256"] for img in page["images"])
        if not page["images"] or len(shas) >= page["total"]:
            return shas


def _timeline(stack: LocalStack, t0: float) -> None:
    """Worker killed 4 s in (and restarted at once), Weaviate killed 6 s later and restarted 5 s after
    that, Redis killed 12 s later and restarted 3 s after that. On the test's main thread: a child's
    PDEATHSIG follows the thread that started it (clipsearch.processes), so no restart runs in a thread."""

    def at(offset: float) -> None:
        time.sleep(max(0.0, t0 + offset - time.monotonic()))

    weaviate, redis_server = stack.weaviate, stack.redis
    assert isinstance(weaviate, WeaviateServer) and redis_server is not None
    at(4)
    worker = stack.workers[-1]
    _kill(worker)
    stack.workers.remove(worker)
    stack.start_worker(timeout_s=90)
    at(10)
    _kill(weaviate.process)
    at(15)
    weaviate.launch(check_ports=False)
    weaviate.wait(90)
    at(27)
    _kill(redis_server.process)
    at(30)
    redis_server.relaunch()  # the same port, data and password, as the supervisor restarts it
    redis_server.process.wait_ready(redis_server.ready, 30)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_no_job_hangs_through_worker_weaviate_and_redis_kills(
    recovery_stack: LocalStack, round_: int
) -> None:
    api = Api(recovery_stack.api_url)
    recovery_stack.wait_healthy(timeout_s=120)  # the previous round's restarts are all back
    name = new_collection(api, f"recovery{round_}")
    images = [make_image(200_000 + round_ * IMAGES + i, 48, 40) for i in range(IMAGES)]
    shas = {hashlib.sha256(data).hexdigest() for data in images}
    assert len(shas) == IMAGES
    per_job = IMAGES // JOBS
    jobs: list[str] = []

    def send() -> None:  # the uploads go on while the main thread drives the faults
        for i in range(0, IMAGES, per_job):
            jobs.append(
                upload(api, name, [(f"{i + j}.jpg", images[i + j]) for j in range(per_job)])["job_id"]
            )

    t0 = time.monotonic()
    uploads = threading.Thread(target=send)
    uploads.start()
    _timeline(recovery_stack, t0)
    uploads.join(60)
    assert not uploads.is_alive() and len(jobs) == JOBS, jobs
    restarted = time.monotonic()

    reports: dict[str, dict[str, Any]] = {}
    while len(reports) < len(jobs):
        assert time.monotonic() - restarted < END_BOUND_S, (
            f"jobs still running {END_BOUND_S} s after the last restart: "
            f"{[_report(api, j) for j in jobs if j not in reports]}"
        )
        for job in jobs:
            report = _report(api, job) if job not in reports else None
            if report and report["state"] in {"completed", "failed", "cancelled"}:
                reports[job] = report
        time.sleep(0.2)

    assert all(r["state"] == "completed" for r in reports.values()), list(reports.values())
    failures = [e for r in reports.values() for e in r["errors"]]
    assert sum(r["done"] for r in reports.values()) == IMAGES and not failures, failures[:3]
    stored = _stored_shas(api, name)
    assert len(stored) == IMAGES and set(stored) == shas  # every image exactly once
