"""Amplification caps, a total sort order, job retention, O(1) metrics and blob collection, over HTTP
against the real stack."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from clipsearch.stack import LocalStack
from indexer.jobs.store import JobStore
from indexer.settings import Settings
from indexer.storage.blobs import BlobStore
from indexer.storage.gc import BlobCollector
from indexer.store.schema import image_uuid
from tests.imagegen import make_image
from tests.integration.classify_helpers import weaviate_client
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.integration


def _error(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.fixture(scope="module")
def rdb(stack: LocalStack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis_url)


# -- sort_by over mixed types -------------------------------------------------------------------------


def test_sort_by_metadata_of_mixed_types_is_a_total_order(api: Api) -> None:
    name = new_collection(api, "mixsort")
    values: list[tuple[str, Any]] = [
        ("n5.jpg", 5),
        ("s-abc.jpg", "abc"),
        ("n2.jpg", 2.5),
        ("s-9.jpg", "9"),
        ("b.jpg", True),
        ("obj.jpg", {"x": 1}),
        ("none.jpg", None),
    ]
    for i, (filename, value) in enumerate(values):
        meta = json.dumps({} if value is None else {"k": value})
        job = upload(api, name, [(filename, make_image(9400 + i))], metadata=meta)["job_id"]
        assert wait_job(api, job)["done"] == 1
    expected = ["b.jpg", "n2.jpg", "n5.jpg", "s-9.jpg", "s-abc.jpg", "obj.jpg"]
    for order, wanted in (("metadata.k", expected), ("-metadata.k", expected[::-1])):
        body = {"collection": name, "query": "a photo", "limit": 20, "sort_by": order}
        response = api.post("/search/text", json=body)
        assert response.status_code == 200, response.text
        got = [hit["filename"] for hit in response.json()["results"]]
        assert got == [*wanted, "none.jpg"], (order, got)  # missing values last either way
        # Stable: the same request gives the same order.
        assert [h["filename"] for h in api.post("/search/text", json=body).json()["results"]] == got


def test_sort_by_window_is_capped(api: Api) -> None:
    name = new_collection(api, "sortcap")
    body = {"collection": name, "query": "x", "sort_by": "filename", "offset": 990, "limit": 20}
    error = _error(api.post("/search/text", json=body))
    assert (
        "offset + limit must not exceed 1000" in error["message"] and "SEARCH_SORT_WINDOW" in error["message"]
    )
    assert api.post("/search/text", json={**body, "offset": 980}).status_code == 200
    # The same cap on image search.
    image = {"collection": name, "image_id": "0" * 8 + "-0000-0000-0000-" + "0" * 12}
    error = _error(api.post("/search/image", json={**image, "sort_by": "width", "offset": 1000, "limit": 1}))
    assert "SEARCH_SORT_WINDOW" in error["message"]


# -- caps on weighted queries, tags, metadata and filters ---------------------------------------------


def test_weighted_queries_are_capped(api: Api) -> None:
    name = new_collection(api, "qcap")
    many = [{"text": f"t{i}"} for i in range(17)]
    error = _error(api.post("/search/text", json={"collection": name, "positive": many}))
    assert error["message"] == "17 `positive` queries, over the limit of 16 (SEARCH_MAX_QUERIES)"
    assert error["details"] == {"field": "positive", "count": 17, "limit": 16}
    body = {"collection": name, "positive": many[:16], "negative": many}
    error = _error(api.post("/search/text", json=body))
    assert error["details"]["field"] == "negative"
    ok = api.post("/search/text", json={"collection": name, "positive": many[:16], "negative": many[:16]})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"tags": ",".join(f"t{i}" for i in range(101))}, "101 tags, over the limit of 100 (MAX_TAGS)"),
        ({"tags": "x" * 129}, "a tag of 129 characters, over the limit of 128 (MAX_TAG_LENGTH)"),
        (
            {"metadata": json.dumps({f"k{i}": i for i in range(65)})},
            "65 metadata keys, over the limit of 64 (MAX_METADATA_KEYS)",
        ),
        ({"metadata": json.dumps({"k" * 129: 1})}, "metadata key of 129 characters"),
        ({"metadata": json.dumps({"k": "v" * 2049})}, "over the limit of 2048 (MAX_METADATA_VALUE_LENGTH)"),
        ({"metadata": json.dumps({"k": list(range(600))})}, "(MAX_METADATA_VALUE_LENGTH)"),
        (
            {"metadata": json.dumps({f"k{i}": "v" * 2000 for i in range(9)})},
            "over the limit of 16384 (MAX_METADATA_BYTES)",
        ),
    ],
)
def test_tags_and_metadata_over_the_caps_are_refused(
    api: Api, stack: LocalStack, form: dict[str, str], message: str
) -> None:
    name = new_collection(api, "metacap")
    jobs_before = len(api.get("/jobs?limit=500").json()["jobs"])
    parts = [("files", ("a.jpg", make_image(9500), "image/jpeg"))]
    error = _error(api.post(f"/collections/{name}/images", files=parts, data=form))
    assert message in error["message"]
    # Nothing was queued or stored.
    assert len(api.get("/jobs?limit=500").json()["jobs"]) == jobs_before
    assert api.get(f"/collections/{name}").json()["count"] == 0


def test_json_ingest_routes_and_filters_share_the_caps(api: Api, stack: LocalStack) -> None:
    name = new_collection(api, "metacap2")
    big = {f"k{i}": i for i in range(65)}
    error = _error(
        api.post(f"/collections/{name}/urls", json={"urls": ["http://127.0.0.1:1/a.jpg"], "metadata": big})
    )
    assert "MAX_METADATA_KEYS" in error["message"]
    error = _error(api.post(f"/collections/{name}/folder", json={"path": "x", "tags": ["t"] * 101}))
    assert "MAX_TAGS" in error["message"]
    filters = {"tags_any": [f"t{i}" for i in range(101)]}
    error = _error(api.post("/search/text", json={"collection": name, "query": "x", "filters": filters}))
    assert error["details"]["field"] == "filters.tags_any"
    error = _error(api.post("/images/delete", json={"collection": name, "filters": {"metadata": big}}))
    assert error["details"]["field"] == "filters.metadata"
    # At the cap exactly is fine.
    ok = {f"k{i}": i for i in range(64)}
    job = upload(api, name, [("ok.jpg", make_image(9501))], metadata=json.dumps(ok), tags=",".join(["t"] * 3))
    assert wait_job(api, job["job_id"])["done"] == 1


# -- exports stream -----------------------------------------------------------------------------------


def test_exports_stream_in_chunks(api: Api) -> None:
    name = new_collection(api, "stream")
    files = [(f"e{i}.jpg", make_image(9600 + i)) for i in range(3)]
    wait_job(api, upload(api, name, files)["job_id"])
    for fmt in ("parquet", "npy"):
        with api.get(f"/collections/{name}/export?format={fmt}", stream=True) as response:
            assert response.status_code == 200
            # Streamed: no Content-Length computed up front, chunked transfer instead.
            assert response.headers.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in response.headers
            data = b"".join(response.iter_content(1 << 16))
        assert data[:4] == (b"PAR1" if fmt == "parquet" else b"PK\x03\x04")


# -- classifier apply is bounded ----------------------------------------------------------------------


def test_classifier_apply_window_is_capped(api: Api) -> None:
    name = new_collection(api, "applycap")
    wait_job(api, upload(api, name, [("a.jpg", make_image(9700)), ("b.jpg", make_image(9701))])["job_id"])
    clf = f"clf{name.split('-')[-1]}"
    created = api.post("/classifiers", json={"name": clf, "query": "a photo", "threshold": -1.0})
    assert created.status_code == 201, created.text
    error = _error(
        api.post(f"/classifiers/{clf}/apply", json={"collection": name, "offset": 990, "limit": 20})
    )
    assert "CLASSIFY_APPLY_MAX_WINDOW" in error["message"]
    ok = api.post(f"/classifiers/{clf}/apply", json={"collection": name, "limit": 1})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["count"] == 1 and body["total"] is None  # more matches than the one fetched
    whole = api.post(f"/classifiers/{clf}/apply", json={"collection": name, "limit": 10}).json()
    assert whole["total"] == 2 and whole["results"][0] == body["results"][0]


# -- job retention and O(1) metrics -------------------------------------------------------------------


def _job_keys(rdb: redis.Redis, job_id: str) -> list[str]:
    return sorted(k.decode() for k in rdb.scan_iter(match=f"clipsearch:job:{job_id}*"))


def test_finished_jobs_expire(api: Api, rdb: redis.Redis, stack: LocalStack) -> None:
    ttl = Settings().job_ttl_s
    name = new_collection(api, "ttl")
    files = [("ok.jpg", make_image(9800)), ("bad.jpg", b"not an image"), ("dup.jpg", make_image(9800))]
    job_id = upload(api, name, files)["job_id"]
    report = wait_job(api, job_id)
    assert report["state"] == "completed" and report["failed"] == 1 and report["duplicates"] == 1
    keys = _job_keys(rdb, job_id)
    assert {k.rsplit(":", 1)[-1] for k in keys} >= {job_id, "items", "outcome", "errors", "sha"}, keys
    for key in keys:
        assert 0 < rdb.ttl(key) <= ttl, (key, rdb.ttl(key))
    # A cancelled job expires too.
    queued = JobStore(rdb).create("upload", name, [{"kind": "rejected", "name": "x", "reason": "r"}])
    assert all(rdb.ttl(k) == -1 for k in _job_keys(rdb, queued))  # running jobs do not expire
    assert api.delete(f"/jobs/{queued}").json()["state"] == "cancelled"
    assert all(0 < rdb.ttl(k) <= ttl for k in _job_keys(rdb, queued))
    # And once a job's keys are gone, it is a 404, and the job list drops it.
    for key in _job_keys(rdb, queued):
        rdb.pexpire(key, 1)
    time.sleep(0.05)
    assert api.get(f"/jobs/{queued}").status_code == 404
    assert queued not in {j["id"] for j in api.get("/jobs?limit=500").json()["jobs"]}


def _calls(rdb: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = rdb.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def _scrape_cost(api: Api, rdb: redis.Redis) -> tuple[dict[str, int], dict[str, float]]:
    before = _calls(rdb)
    text = api.get("/metrics").text
    after = _calls(rdb)
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    jobs = {m[0]: float(m[1]) for m in re.findall(r'^clipsearch_jobs\{state="(\w+)"\} (\S+)$', text, re.M)}
    return delta, jobs


def test_metrics_scrape_does_not_read_every_job(api: Api, rdb: redis.Redis) -> None:
    cost_before, jobs_before = _scrape_cost(api, rdb)
    store = JobStore(rdb)
    for _ in range(60):
        store.create("upload", "metrics-probe", [])  # an empty job completes at once
    cost_after, jobs_after = _scrape_cost(api, rdb)
    assert jobs_after["completed"] == jobs_before["completed"] + 60
    # The per-job reads of the old collector (one HGET per job ever made) are gone.
    assert cost_after.get("hget", 0) < 5 and cost_after.get("zrange", 0) == 0, cost_after
    scrape = {k: v for k, v in cost_after.items() if k not in {"info", "brpop", "ping", "setex", "set"}}
    assert sum(scrape.values()) <= sum(cost_before.values()) + 6, (cost_before, cost_after)
    assert sum(scrape.values()) < 30, scrape


# -- blobs are collected -------------------------------------------------------------------------------


def _blob_paths(data_dir: Path, sha: str) -> tuple[Path, Path]:
    blobs = BlobStore(data_dir / "blobs")
    return blobs.original_path(sha), blobs.thumbnail_path(sha)


def test_shared_blobs_go_with_the_last_image(api: Api, data_root: Path) -> None:
    data = make_image(9900)
    sha = hashlib.sha256(data).hexdigest()
    first, second = new_collection(api, "blob1"), new_collection(api, "blob2")
    for name in (first, second):
        assert wait_job(api, upload(api, name, [("same.jpg", data)])["job_id"])["done"] == 1
    original, thumbnail = _blob_paths(data_root, sha)
    assert original.is_file() and thumbnail.is_file()
    # Deleting one collection leaves the blob the other still uses.
    assert api.delete(f"/collections/{first}").status_code == 204
    kept = image_uuid(second, sha)
    assert original.is_file() and thumbnail.is_file()
    assert api.get(f"/images/{kept}/file").content == data
    # Deleting the last image that uses it removes both files.
    assert api.delete(f"/images/{kept}").status_code == 204
    assert not original.exists() and not thumbnail.exists()
    assert api.get(f"/images/{kept}/file").status_code == 404


def test_collection_and_filtered_deletes_collect_their_blobs(api: Api, data_root: Path) -> None:
    name = new_collection(api, "blob3")
    files = [(f"u{i}.jpg", make_image(9910 + i)) for i in range(3)]
    wait_job(api, upload(api, name, files[:2], tags="gone")["job_id"])
    wait_job(api, upload(api, name, files[2:], tags="stay")["job_id"])
    shas = [hashlib.sha256(d).hexdigest() for _, d in files]
    response = api.post("/images/delete", json={"collection": name, "filters": {"tags": ["gone"]}})
    assert response.status_code == 200 and response.json() == {"deleted": 2}
    for sha in shas[:2]:
        assert not any(p.exists() for p in _blob_paths(data_root, sha))
    assert all(p.is_file() for p in _blob_paths(data_root, shas[2]))
    assert api.delete(f"/collections/{name}").status_code == 204
    assert not any(p.exists() for p in _blob_paths(data_root, shas[2]))


def test_a_pinned_blob_survives_collection(settings: Settings, rdb: redis.Redis, data_root: Path) -> None:
    """The ingest side pins a hash before it writes the blob: a delete elsewhere that collects the same
    bytes in that window leaves them alone; once unpinned and unreferenced, they go."""
    blobs = BlobStore(data_root / "blobs")
    data = make_image(9920)
    sha = hashlib.sha256(data).hexdigest()
    with weaviate_client(settings) as client:
        collector = BlobCollector(client, rdb, blobs)
        with collector.pinned([sha]):
            blobs.put_original(sha, data)
            assert collector.collect([sha]) == 0
            assert blobs.original_path(sha).is_file()
        assert collector.collect([sha]) == 1
        assert not blobs.original_path(sha).exists()
