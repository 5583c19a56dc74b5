"""Scale-out: the S3-compatible object store (rclone serve s3) for staging and blobs, workers with their own
DATA_DIR, and a 3-node Weaviate cluster that loses a node in the middle of an ingest.

These start their own stacks (not the session stack, which stays on the local-directory backend so the
other tests stay fast): each is real, on loopback, and bounded in time.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clipsearch.object_store_server import object_store_binary
from clipsearch.processes import free_port
from clipsearch.stack import LocalStack
from clipsearch.weaviate_server import WeaviateCluster
from indexer.settings import Settings
from indexer.storage.objectstore import open_store
from indexer.store.connection import connect
from indexer.store.schema import image_collection_name
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.timeout(900)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture()  # stopped before the cluster test starts: one stack at a time on 2 cores
def s3_stack(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """API + object store on one DATA_DIR, the only worker on another (as if on another machine)."""
    if not object_store_binary(Settings()).is_file():
        pytest.fail("object store binary missing: run scripts/build_object_store.sh (setup.sh does)")
    api_dir = tmp_path_factory.mktemp("api-machine")
    local = LocalStack(Settings(data_dir=api_dir, api_port=free_port()), worker=False, object_store=True)
    local.start()
    try:
        local.start_worker(data_dir=tmp_path_factory.mktemp("worker-machine"))
        local.wait_healthy(timeout_s=120)
        yield local
    finally:
        local.stop()


def test_worker_with_its_own_data_dir_indexes_from_the_object_store(s3_stack: LocalStack) -> None:
    api = Api(s3_stack.api_url)
    worker_env = s3_stack.workers[0].env or {}
    worker_dir = Path(worker_env["DATA_DIR"])
    assert worker_dir != s3_stack.settings.data_dir
    name = new_collection(api, "s3")
    images = [(f"img{i}.jpg", make_image(900 + i, 96, 64)) for i in range(5)]
    job = upload(api, name, images)
    report = wait_job(api, job["job_id"])
    assert report["state"] == "completed" and (report["done"], report["failed"]) == (5, 0), report

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(2):
            zf.writestr(f"z/{i}.jpg", make_image(950 + i, 80, 80))
    response = api.post(
        f"/collections/{name}/zip", files={"file": ("a.zip", archive.getvalue(), "application/zip")}
    )
    assert response.status_code == 202, response.text
    report = wait_job(api, response.json()["job_id"])
    assert report["state"] == "completed" and (report["done"], report["failed"]) == (2, 0), report

    # Neither machine's disk holds a blob or a staged upload: everything went through the store.
    for root in (s3_stack.settings.data_dir, worker_dir):
        assert not _files(root / "blobs"), root
        assert not _files(root / "staging"), root
    store = open_store(s3_stack.service_settings())
    first = hashlib.sha256(images[0][1]).hexdigest()
    assert store.child("blobs").exists(f"originals/{first[:2]}/{first}")
    assert s3_stack.object_store is not None  # the server's buckets are directories on its disk
    bucket_root = s3_stack.object_store.data_dir / "buckets" / "clipsearch" / "clipsearch"
    assert _files(bucket_root / "blobs" / "thumbnails")
    deadline = time.monotonic() + 30  # the job's last chunk removes its staged uploads from the store
    while _files(bucket_root / "staging" / job["job_id"]):
        assert time.monotonic() < deadline, "staged uploads were not removed from the object store"
        time.sleep(0.5)

    # The API serves thumbnails and originals from the store.
    listed = api.get(f"/collections/{name}/images", params={"limit": 10}).json()
    items = listed["images"]
    assert listed["total"] == 7 and len(items) == 7, listed
    by_sha = {img["sha256"]: img for img in items}
    image = by_sha[first]
    original = api.get(image["file_url"])
    assert original.status_code == 200 and original.content == images[0][1]
    thumb = api.get(image["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    # and a search works, served by the API with the worker elsewhere
    hits = api.post("/search/text", json={"collection": name, "query": "a photo", "limit": 3})
    assert hits.status_code == 200, hits.text


# -- a 3-node Weaviate cluster with the object store, losing a node in the middle of an ingest --------
IMAGES = 600
BATCH = 100


@pytest.fixture(scope="module")
def cluster_stack(
    stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    local = LocalStack(
        Settings(data_dir=tmp_path_factory.mktemp("cluster"), api_port=free_port()),
        object_store=True,
        weaviate_nodes=3,
    )
    local.start()
    try:
        local.wait_healthy(timeout_s=180)
        yield local
    finally:
        local.stop()


def _shas_at_one(node_url: str, settings: Settings, collection: str, name: str) -> list[str]:
    """The sha256 of every image of user collection `name` that one node answers with at consistency ONE,
    in one request (no paging, which replicas under repair can shift between pages)."""
    from weaviate.classes.config import ConsistencyLevel
    from weaviate.classes.query import Filter

    with connect(settings.model_copy(update={"weaviate_url": node_url})) as client:
        images = client.collections.use(collection).with_consistency_level(ConsistencyLevel.ONE)
        found = images.query.fetch_objects(
            filters=Filter.by_property("collection").equal(name),
            limit=IMAGES + 10,
            return_properties=["sha256"],
        )
        return [str(obj.properties["sha256"]) for obj in found.objects]


def _converged(cluster: WeaviateCluster, settings: Settings, collection: str, name: str) -> list[int]:
    """Wait until every node answers with each image exactly once; returns the last counts per node
    (total, distinct), flattened, for the assertion message."""
    deadline = time.monotonic() + 180
    counts: list[int] = []
    while time.monotonic() < deadline:
        counts = []
        for node in cluster.nodes:
            shas = _shas_at_one(node.grpc_url, settings, collection, name)
            counts += [len(shas), len(set(shas))]
        if counts == [IMAGES] * 2 * len(cluster.nodes):
            break
        time.sleep(2)
    return counts


def _search(api: Api, name: str) -> Any:
    return api.post("/search/text", json={"collection": name, "query": "a photo", "limit": 5}, timeout=30)


def _wait_search_answers(api: Api, name: str, timeout_s: float = 60) -> None:
    """Until a search answers 200; meanwhile only a 503 with Retry-After is acceptable, never a 500."""
    deadline = time.monotonic() + timeout_s
    while (response := _search(api, name)).status_code != 200:
        assert response.status_code == 503 and response.headers.get("Retry-After"), response.text
        assert time.monotonic() < deadline, f"searches did not answer again: {response.text}"
        time.sleep(0.2)


def test_cluster_survives_a_node_killed_mid_ingest(cluster_stack: LocalStack) -> None:
    api = Api(cluster_stack.api_url)
    cluster = cluster_stack.weaviate
    assert isinstance(cluster, WeaviateCluster) and len(cluster.nodes) == 3
    nodes = api.get("/health").json()["parts"]["weaviate"]["nodes"]
    assert [n["status"] for n in nodes] == ["HEALTHY"] * 3, nodes

    name = new_collection(api, "cluster")
    images = [make_image(10_000 + i, 40, 40) for i in range(IMAGES)]
    assert len({hashlib.sha256(b).hexdigest() for b in images}) == IMAGES
    jobs = [
        upload(api, name, [(f"{i + j}.jpg", images[i + j]) for j in range(BATCH)])["job_id"]
        for i in range(0, IMAGES, BATCH)
    ]

    def done() -> int:
        return sum(api.get(f"/jobs/{job}").json()["done"] for job in jobs)

    deadline = time.monotonic() + 120
    while done() < IMAGES // 4:
        assert time.monotonic() < deadline, "the ingest did not start"
        time.sleep(0.2)
    # The worker is frozen while the node dies, so the ingest is certainly mid-way whatever the load;
    # only for that instant (a chunk frozen longer would run past its time limit). Every later step
    # waits on a state, not on a delay.
    worker = cluster_stack.workers[0]
    assert worker.process is not None
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        killed_at_done = done()
        assert killed_at_done < IMAGES, "the ingest ended before the worker was frozen"
        # Kill the node the API and the worker talk to first (node 0): both must fail over.
        victim = cluster.nodes[0]
        assert victim.process.process is not None
        os.kill(victim.process.process.pid, signal.SIGKILL)
        victim.process.process.wait(10)
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    _wait_search_answers(api, name)  # the API has moved to a live node
    answered = [_search(api, name).status_code for _ in range(20)]
    assert answered == [200] * 20, f"searches failed after the API failed over: {answered}"

    reports = [wait_job(api, job, timeout_s=300) for job in jobs]
    assert all(r["state"] == "completed" for r in reports), reports
    errors = [e for r in reports for e in r["errors"]]
    assert sum(r["done"] for r in reports) == IMAGES and not errors, errors[:3]
    listed = api.get(f"/collections/{name}").json()

    # the same ports and data directory: it rejoins and catches up (async replication)
    victim.launch(check_ports=False)
    victim.wait(120)
    settings = cluster_stack.service_settings()
    collection = image_collection_name(listed["model_id"])
    counts = _converged(cluster, settings, collection, name)
    assert counts == [IMAGES] * 6, counts  # every node holds every image exactly once
    health = api.get("/health").json()["parts"]["weaviate"]["nodes"]
    assert [n["status"] for n in health] == ["HEALTHY"] * 3, health


# -- the same cluster losing its quorum: 2 of 3 nodes killed mid-ingest, restarted 15 s later ----------
OUTAGE_S = 15


def _wait_nodes_healthy(api: Api, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        response = api.get("/health")
        nodes = response.json().get("parts", {}).get("weaviate", {}).get("nodes", [])
        if [n.get("status") for n in nodes] == ["HEALTHY"] * 3:
            return
        assert time.monotonic() < deadline, f"the cluster is not whole again: {nodes}"
        time.sleep(0.5)


def _search_until(api: Api, name: str, until: float, statuses: list[int]) -> None:
    while time.monotonic() < until:
        response = _search(api, name)
        retry_after = response.headers.get("Retry-After")
        # a 503 without Retry-After is recorded as -503, which the test refuses
        statuses.append(-503 if response.status_code == 503 and not retry_after else response.status_code)
        time.sleep(0.5)


def test_a_lost_quorum_pauses_the_jobs_then_they_resume(cluster_stack: LocalStack) -> None:
    api = Api(cluster_stack.api_url)
    cluster = cluster_stack.weaviate
    assert isinstance(cluster, WeaviateCluster)
    _wait_nodes_healthy(api)
    name = new_collection(api, "quorum")
    images = [make_image(20_000 + i, 40, 40) for i in range(IMAGES)]
    jobs = [
        upload(api, name, [(f"{i + j}.jpg", images[i + j]) for j in range(BATCH)])["job_id"]
        for i in range(0, IMAGES, BATCH)
    ]

    def reports() -> list[dict[str, Any]]:
        return [api.get(f"/jobs/{job}").json() for job in jobs]

    deadline = time.monotonic() + 120
    while sum(r["done"] for r in reports()) < IMAGES // 4:
        assert time.monotonic() < deadline, "the ingest did not start"
        time.sleep(0.2)
    victims = cluster.nodes[:2]  # the API and the worker talk to node 0 first
    for node in victims:
        assert node.process.process is not None
        os.kill(node.process.process.pid, signal.SIGKILL)
    for node in victims:
        assert node.process.process is not None
        node.process.process.wait(10)
    killed = time.monotonic()

    paused: set[str] = set()
    statuses: list[int] = []
    searching = threading.Thread(target=_search_until, args=(api, name, killed + OUTAGE_S, statuses))
    searching.start()  # searches go on beside the job reports: one may wait on a dead node's deadline
    while time.monotonic() - killed < OUTAGE_S:  # the outage itself: observe the jobs
        current = reports()
        assert all(r["state"] in {"queued", "running", "completed"} for r in current), current
        assert not [e for r in current for e in r["errors"]], "an item failed during the outage"
        paused |= {r["paused"] for r in current if r.get("paused")}
        time.sleep(0.3)
    searching.join(120)
    assert statuses and set(statuses) <= {200, 503}, statuses  # never a 500, a 503 says when to retry
    assert any("vector store has no quorum" in reason for reason in paused), paused

    for node in victims:
        node.launch(check_ports=False)
    for node in victims:
        node.wait(120)
    final = [wait_job(api, job, timeout_s=300) for job in jobs]
    assert all(r["state"] == "completed" and r["paused"] is None for r in final), final
    errors = [e for r in final for e in r["errors"]]
    assert sum(r["done"] for r in final) == IMAGES and not errors, errors[:3]
    _wait_search_answers(api, name)

    settings = cluster_stack.service_settings()
    collection = image_collection_name(api.get(f"/collections/{name}").json()["model_id"])
    counts = _converged(cluster, settings, collection, name)
    assert counts == [IMAGES] * 6, counts  # every node converged: every image exactly once on each
