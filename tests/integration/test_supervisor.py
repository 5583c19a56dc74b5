"""`clipsearch up` supervises its parts: each one SIGKILLed during an ingest comes back on its own ports and
data, the ingest completes with every image stored once, and searches keep answering (except while the
API itself is down). A part that keeps dying is given up and /health says the stack is degraded.

Everything goes through the real entry point (`python -m clipsearch.cli up`, then `clipsearch index`) and
HTTP; the process ids come from the supervisor's status file (DATA_DIR/supervisor.json), /health says
when a part is back. Every wait has a deadline; nothing sleeps a fixed time to assert anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from clipsearch.object_store_server import object_store_binary
from clipsearch.processes import free_port
from indexer.settings import Settings
from indexer.supervision import read_status, status_path
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

IMAGES = 240


class Up:
    """One `clipsearch up` child with its own DATA_DIR and API port; its output goes to a file."""

    def __init__(self, data_dir: Path, *args: str, **env: str) -> None:
        self.data_dir = data_dir
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = Api(self.url)
        self.output = data_dir / "up.out"
        child_env = dict(os.environ, DATA_DIR=str(data_dir), API_PORT=str(port), SUPERVISOR_BACKOFF_S="0.5")
        child_env.update(env)
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "clipsearch.cli", "up", *args],
                env=child_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_until(self, what: str, check: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert self.proc.poll() is None, f"`clipsearch up` exited ({self.proc.returncode}):\n{self.log()}"
            assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s\n{self.log()[-3000:]}"
            time.sleep(0.2)

    def health(self) -> tuple[int, dict[str, Any]] | None:
        """/health's status and body; None while the API does not answer."""
        try:
            response = requests.get(self.url + "/health", timeout=10)
        except requests.RequestException:
            return None
        return response.status_code, response.json()

    def wait_healthy(self, timeout_s: float = 180) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def ok() -> bool:
            answer = self.health()
            if answer is None or answer[0] != 200 or "supervisor" not in answer[1]:
                return False
            found.update(answer[1])
            return True

        self.wait_until("the stack is healthy", ok, timeout_s)
        return found

    def pid(self, part: str) -> int:
        status = read_status(status_path(self.data_dir))
        assert status is not None, "no supervisor status file"
        pid = status["pids"][part]
        assert isinstance(pid, int), status
        return pid

    def kill(self, part: str) -> int:
        pid = self.pid(part)
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_back(self, part: str, restarts: int, timeout_s: float = 120) -> dict[str, Any]:
        """/health (once the API answers) says the part is running again after `restarts` restarts, and
        every part is ready."""
        seen: dict[str, Any] = {}

        def back() -> bool:
            answer = self.health()
            if answer is None or answer[0] != 200:
                return False
            state = answer[1]["supervisor"]["parts"][part]
            seen.update(answer[1])
            return bool(state["state"] == "running" and state["restarts"] == restarts)

        self.wait_until(f"{part} is back", back, timeout_s)
        return seen

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class Searches:
    """Searches in a background thread every 0.2 s while a part is down: each answer's status code, or 0
    for no connection."""

    def __init__(self, api: Api, collection: str) -> None:
        self.api, self.collection = api, collection
        self.codes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"collection": self.collection, "query": "a photo", "limit": 5}
        while not self._stop.is_set():
            try:
                response = requests.post(self.api.base + "/search/text", json=body, timeout=30)
                code = response.status_code
                assert code != 503 or int(response.headers["Retry-After"]) >= 1
            except requests.RequestException:
                code = 0
            self.codes.append(code)
            self._stop.wait(0.2)

    def __enter__(self) -> Searches:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def up(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One stack for the four kills, with the object store (the part killed in one of them)."""
    if not object_store_binary(Settings()).is_file():
        pytest.fail("object store binary missing: run scripts/build_object_store.sh (setup.sh does)")
    stack = Up(tmp_path_factory.mktemp("supervised"), "--object-store")
    try:
        stack.wait_healthy()
        yield stack
    finally:
        assert stack.stop() == 0, stack.log()[-3000:]


def _count(api: Api, collection: str) -> int:
    return int(api.get(f"/collections/{collection}").json()["count"])


def _shas(api: Api, collection: str) -> list[str]:
    found: list[dict[str, Any]] = []
    while True:
        params = {"limit": 100, "offset": len(found)}
        page = api.get(f"/collections/{collection}/images", params=params).json()
        found.extend(page["images"])
        if not page["images"] or len(found) >= page["total"]:
            return [image["sha256"] for image in found]


def _kill_during_ingest(up: Up, tmp_path: Path, part: str, seed: int) -> tuple[str, Searches, str]:
    """`clipsearch index` of IMAGES new photos; `part` SIGKILLed once a quarter is stored; returns the
    collection, the searches made until the ingest ended, and the CLI's output. Asserts the CLI ended
    well, the part came back (restarted once more) and every photo is stored exactly once."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(IMAGES):
        (folder / f"p{i:04d}.jpg").write_bytes(make_image(seed + i, 96, 72))
    name = new_collection(up.api, part)
    before = up.health()
    assert before is not None
    restarts = before[1]["supervisor"]["parts"][part]["restarts"]
    cli = subprocess.Popen(
        [sys.executable, "-m", "clipsearch.cli", "index", str(folder), "--collection", name, "--url", up.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        up.wait_until("a quarter is stored", lambda: _count(up.api, name) >= IMAGES // 4, 180)
        with Searches(up.api, name) as searches:
            assert _count(up.api, name) < IMAGES, "the ingest ended before the kill; use more images"
            up.kill(part)
            up.wait_back(part, restarts + 1)
            output, _ = cli.communicate(timeout=300)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(10)
    assert cli.returncode == 0, output
    assert "failed 0" in output, output
    shas = _shas(up.api, name)
    assert len(shas) == IMAGES and len(set(shas)) == IMAGES  # every photo, each once
    assert _count(up.api, name) == IMAGES
    assert f"{part} died (exit code -9)" in up.log()
    return name, searches, output


def _searchable(api: Api, name: str) -> None:
    response = api.post("/search/text", json={"collection": name, "query": "a photo", "limit": 5})
    assert response.status_code == 200 and len(response.json()["results"]) == 5, response.text


def test_weaviate_killed_during_an_ingest_comes_back(up: Up, tmp_path: Path) -> None:
    name, searches, _ = _kill_during_ingest(up, tmp_path, "weaviate", 300_000)
    # A single node: while it restarts a search is a 503 with Retry-After, never a 500 or a dropped line.
    assert searches.codes and set(searches.codes) <= {200, 503}, searches.codes
    _searchable(up.api, name)


def test_redis_killed_during_an_ingest_comes_back_with_its_password_and_data(up: Up, tmp_path: Path) -> None:
    config = up.data_dir / "redis" / "clipsearch-redis.conf"
    password = config.read_text()
    earlier = new_collection(up.api, "kept")
    job_id = upload(up.api, earlier, [("k.jpg", make_image(310_999))])["job_id"]
    assert wait_job(up.api, job_id)["state"] == "completed"
    name, searches, _ = _kill_during_ingest(up, tmp_path, "redis", 310_000)
    assert config.read_text() == password  # the clients' REDIS_URL still opens it
    assert wait_job(up.api, job_id)["state"] == "completed"  # the append-only file kept the job records
    assert searches.codes and set(searches.codes) == {200}, searches.codes  # search needs no Redis
    _searchable(up.api, name)


def test_object_store_killed_during_an_ingest_comes_back(up: Up, tmp_path: Path) -> None:
    name, searches, _ = _kill_during_ingest(up, tmp_path, "object-store", 320_000)
    assert searches.codes and set(searches.codes) == {200}, searches.codes
    image = up.api.get(f"/collections/{name}/images", params={"limit": 1}).json()["images"][0]
    assert up.api.get(f"/images/{image['id']}/file").status_code == 200  # the originals survived it


def test_api_killed_during_an_ingest_comes_back(up: Up, tmp_path: Path) -> None:
    name, searches, _ = _kill_during_ingest(up, tmp_path, "api", 330_000)
    # no answer while it was down (0), only 200s otherwise
    assert set(searches.codes) <= {0, 200} and 0 in searches.codes, searches.codes
    assert searches.codes[-1] == 200
    _searchable(up.api, name)
    report = up.wait_healthy()
    assert report["status"] == "ok" and report["supervisor"]["given_up"] == []
    assert report["supervisor"]["restarts"] >= 1


def test_a_killed_worker_comes_back_under_a_new_name_and_indexes(up: Up) -> None:
    health = up.wait_healthy()
    before = set(health["parts"]["workers"]["names"])
    restarts = health["supervisor"]["parts"]["worker-0"]["restarts"]
    up.kill("worker-0")
    report = up.wait_back("worker-0", restarts + 1)
    assert report["parts"]["workers"]["ready"] and set(report["parts"]["workers"]["names"]) - before
    name = new_collection(up.api, "worker")
    files = [(f"w{i}.jpg", make_image(360_000 + i)) for i in range(4)]
    job = wait_job(up.api, upload(up.api, name, files)["job_id"])
    assert job["state"] == "completed" and job["done"] == 4, job


def test_a_part_that_keeps_dying_is_given_up_and_the_rest_serves_degraded(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    stack = Up(tmp_path, "--object-store", SUPERVISOR_MAX_RESTARTS="2", SUPERVISOR_RESTART_WINDOW_S="300")
    try:
        stack.wait_healthy()
        name = new_collection(stack.api, "degraded")
        files = [(f"d{i}.jpg", make_image(340_000 + i)) for i in range(6)]
        assert wait_job(stack.api, upload(stack.api, name, files)["job_id"])["state"] == "completed"
        for restarts in (1, 2):  # killed as often as it may be restarted: it comes back each time
            stack.kill("object-store")
            stack.wait_back("object-store", restarts)
        stack.kill("object-store")  # once more within the window: given up

        def given_up() -> bool:
            answer = stack.health()
            return answer is not None and answer[1]["supervisor"]["given_up"] == ["object-store"]

        stack.wait_until("the object store is given up", given_up, 60)
        code, report = stack.health() or (0, {})
        assert code == 200 and report["status"] == "degraded", report
        supervisor = report["supervisor"]
        assert supervisor["degraded"] is True and supervisor["parts"]["object-store"]["state"] == "given_up"
        assert supervisor["parts"]["object-store"]["restarts"] == 2
        assert all(part["ready"] for part in report["parts"].values()), report["parts"]
        assert "pids" not in supervisor
        assert "GIVING UP on object-store: it died 3 times within 300 s" in stack.log()
        _searchable(stack.api, name)  # the rest still serves
        refused = stack.api.post(
            f"/collections/{name}/images", files=[("files", ("n.jpg", make_image(340_100), "image/jpeg"))]
        )  # an upload needs the store: refused as an outage, to be retried, not a 500
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1, refused.text
        assert refused.json()["error"]["details"]["dependency"] == "object store"
        status = json.loads(status_path(tmp_path).read_text())
        assert status["pids"]["object-store"] is None and stack.proc.poll() is None
    finally:
        assert stack.stop() == 0, stack.log()[-3000:]
    assert not status_path(tmp_path).exists()


def test_a_cluster_node_killed_during_an_ingest_comes_back_and_searches_never_stop(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    """Three Weaviate nodes: the first (the one the API and the worker talk to first) is SIGKILLed mid-
    ingest; the others keep answering searches, the supervisor brings it back and it rejoins."""
    stack = Up(tmp_path, "--weaviate-nodes", "3")
    try:
        nodes = stack.wait_healthy(timeout_s=240)["parts"]["weaviate"]["nodes"]
        assert [n["status"] for n in nodes] == ["HEALTHY"] * 3, nodes
        name, searches, _ = _kill_during_ingest(stack, tmp_path, "weaviate-0", 350_000)
        # The API moves to another node within a second (FailoverClient checks its node at most that
        # often): a search or two in between is a 503 with Retry-After, never a 500 or a dropped line.
        codes = searches.codes
        assert len(codes) >= 5 and set(codes) <= {200, 503} and codes.count(503) <= 5, codes
        assert codes[-1] == 200, codes

        def rejoined() -> bool:
            answer = stack.health()
            found = answer[1]["parts"]["weaviate"].get("nodes", []) if answer else []
            return [n["status"] for n in found] == ["HEALTHY"] * 3

        stack.wait_until("the node rejoined", rejoined, 120)
        _searchable(stack.api, name)
    finally:
        assert stack.stop() == 0, stack.log()[-3000:]
