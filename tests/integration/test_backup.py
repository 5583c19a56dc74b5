"""Backups over HTTP (issue 25): index, label with a class set, calibrate a classifier, back up while an
ingest goes on, wipe every data directory, start an empty stack, restore, and find the same search
results, labels and classifier decisions.

It starts its own stacks (one at a time, on the same data directory, with BACKUP_URL outside it), not the
session stack: a restore needs an empty one.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clipsearch.cli import main as cli
from clipsearch.object_store_server import BUCKET, object_store_binary
from clipsearch.processes import free_port
from clipsearch.stack import LocalStack
from indexer.settings import Settings
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

IMAGES = 36
QUERIES = ["a photo", "a red square", "a dog on the beach", "mountains at night", "a blue circle"]


class Stacks:
    """Starts one stack at a time on one data directory, with backups in a directory outside it (or in
    the managed object store, with ``object_store``)."""

    def __init__(self, data_dir: Path, backups: Path, object_store: bool = False) -> None:
        self.data_dir = data_dir
        self.backups = backups
        self.object_store = object_store
        self.current: LocalStack | None = None

    def start(self) -> Api:
        settings = Settings(data_dir=self.data_dir, api_port=free_port())
        local = LocalStack(settings, object_store=self.object_store)
        local.start()
        self.current = local
        local.wait_healthy(timeout_s=180)
        return Api(local.api_url)

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture()
def stacks(stack_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stacks]:
    backups = tmp_path / "backups"
    monkeypatch.setenv("BACKUP_URL", str(backups))  # the stack's children read it from the environment
    monkeypatch.setenv("JOB_TTL_S", "86400")
    own = Stacks(tmp_path / "data", backups)
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture()
def s3_stacks(stack_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stacks]:
    if not object_store_binary(Settings()).is_file():
        pytest.fail("object store binary missing: run scripts/build_object_store.sh (setup.sh does)")
    monkeypatch.setenv("BACKUP_URL", f"s3://{BUCKET}/backups")
    data = tmp_path / "data"
    own = Stacks(data, data / "object-store" / "buckets" / BUCKET / "backups", object_store=True)
    try:
        yield own
    finally:
        own.stop()


def wait_for(api: Api, path: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = api.get(path).json()
        if body.get("state") in {"completed", "failed", "interrupted"}:
            return body
        assert time.monotonic() < deadline, f"{path} did not end: {body}"
        time.sleep(0.5)


def searches(api: Api, collection: str) -> dict[str, list[tuple[str, float]]]:
    found = {}
    for query in QUERIES:
        response = api.post("/search/text", json={"collection": collection, "query": query, "limit": 10})
        assert response.status_code == 200, response.text
        found[query] = [(hit["id"], round(hit["score"], 5)) for hit in response.json()["results"]]
    return found


def labels(api: Api, ids: list[str]) -> dict[str, tuple[list[str], dict[str, float]]]:
    found = {}
    for image_id in ids:
        body = api.get(f"/images/{image_id}").json()
        scores = {k: round(v, 5) for k, v in body["label_scores"].items()}
        found[image_id] = (sorted(body["labels"]), scores)
    return found


def decisions(api: Api, classifier: str, collection: str, ids: list[str]) -> dict[str, Any]:
    stored = api.get(f"/classifiers/{classifier}").json()
    each = api.post(f"/classifiers/{classifier}/apply", json={"image_ids": ids}).json()["results"]
    whole = api.post(f"/classifiers/{classifier}/apply", json={"collection": collection}).json()
    return {
        "threshold": stored["threshold"],
        "calibration": stored["calibration"],
        "each": [(r["image_id"], r["match"], round(r["score"], 5)) for r in each],
        "whole": [r["image_id"] for r in whole["results"]],
    }


def classified(api: Api, class_set: str, ids: list[str]) -> list[str]:
    found = []
    for image_id in ids[:6]:
        response = api.post("/classify", json={"class_set": class_set, "image_id": image_id})
        assert response.status_code == 200, response.text
        found.append(response.json()["predictions"][0]["label"])
    return found


def test_a_restore_into_an_empty_stack_gives_the_same_answers(stacks: Stacks) -> None:
    api = stacks.start()
    name = new_collection(api, "kept")
    images = [(f"k{i}.jpg", make_image(20_000 + i, 96, 72)) for i in range(IMAGES)]
    jobs = [upload(api, name, images[i : i + 12])["job_id"] for i in range(0, IMAGES, 12)]
    assert all(wait_job(api, job)["state"] == "completed" for job in jobs)
    page = api.get(f"/collections/{name}/images", params={"limit": 100}).json()
    ids = sorted(img["id"] for img in page["images"])
    assert len(ids) == IMAGES

    # a class set from stored examples, run over the collection as a label job
    class_set = f"kinds-{uuid.uuid4().hex[:6]}"
    classes = {
        "first": {"image_ids": ids[:3]},
        "second": {"image_ids": ids[3:6]},
        "third": {"prompts": ["a cat"]},
    }
    created = api.post("/class-sets", json={"name": class_set, "collection": name, "classes": classes})
    assert created.status_code == 201, created.text
    labelled = api.post(f"/class-sets/{class_set}/label")
    assert labelled.status_code == 202, labelled.text
    assert wait_job(api, labelled.json()["job_id"])["state"] == "completed"
    # a yes/no classifier, calibrated on labelled examples
    classifier = f"yes-{uuid.uuid4().hex[:6]}"
    assert api.post("/classifiers", json={"name": classifier, "image_ids": ids[:2]}).status_code == 201
    examples = [{"image_id": image_id, "label": i % 3 == 0} for i, image_id in enumerate(ids[2:14])]
    calibrated = api.post(f"/classifiers/{classifier}/calibrate", json={"examples": examples})
    assert calibrated.status_code == 200, calibrated.text
    assert calibrated.json()["applied"] is True

    before = {
        "search": searches(api, name),
        "labels": labels(api, ids),
        "classifier": decisions(api, classifier, name, ids),
        "classify": classified(api, class_set, ids),
        "class_set": api.get(f"/class-sets/{class_set}").json(),
        "job": api.get(f"/jobs/{jobs[0]}").json(),
    }
    assert any(labels for labels, _ in before["labels"].values())
    thumbnail = api.get(f"/images/{ids[0]}/thumbnail").content

    # a backup while another ingest goes on
    other = new_collection(api, "during")
    during = upload(api, other, [(f"d{i}.jpg", make_image(21_000 + i, 64, 64)) for i in range(24)])["job_id"]
    started = api.post("/admin/backups", json={})
    assert started.status_code == 202, started.text
    backup_id = started.json()["id"]
    assert started.json()["state"] == "running"
    assert api.post("/admin/backups", json={}).status_code == 409  # one at a time
    manifest = wait_for(api, f"/admin/backups/{backup_id}")
    assert manifest["state"] == "completed", manifest
    assert wait_job(api, during)["state"] == "completed"  # the ingest was not held up

    kept = {c["name"]: c for c in manifest["collections"]}
    assert kept[name]["images"] == IMAGES
    assert (manifest["class_sets"], manifest["classifiers"]) == (1, 1)
    assert manifest["blobs"]["files"] >= 2 * IMAGES  # an original and a thumbnail each
    assert manifest["redis"]["jobs"] >= len(jobs) + 1
    assert manifest["versions"]["weaviate"] and manifest["weaviate"]["backend"] == "filesystem"
    assert (stacks.backups / backup_id / "weaviate" / backup_id).is_dir()
    listed = api.get("/admin/backups").json()["backups"]
    assert [b["id"] for b in listed] == [backup_id]
    outside = api.post("/admin/backups", json={"to": str(stacks.data_dir.parent / "elsewhere")})
    assert outside.status_code == 403, outside.text

    # a lost disk: every data directory goes, an empty stack starts on the same path
    stacks.stop()
    shutil.rmtree(stacks.data_dir)
    api = stacks.start()
    assert api.get(f"/collections/{name}").status_code == 404
    assert cli(["backup", "list", "--url", api.base]) == 0
    assert cli(["backup", "restore", backup_id, "--url", api.base]) == 0
    status = api.get(f"/admin/backups/{backup_id}/restore").json()
    assert status["state"] == "completed", status
    assert status["restored"]["blobs"] == manifest["blobs"]["files"]
    # the only counts that may differ are those of the images the concurrent ingest was adding
    assert set(status["mismatches"]) <= {
        c["name"] for c in manifest["weaviate"]["classes"] if "Images" in c["name"]
    }

    after = {
        "search": searches(api, name),
        "labels": labels(api, ids),
        "classifier": decisions(api, classifier, name, ids),
        "classify": classified(api, class_set, ids),
        "class_set": api.get(f"/class-sets/{class_set}").json(),
        "job": api.get(f"/jobs/{jobs[0]}").json(),
    }
    assert after == before
    assert api.get(f"/images/{ids[0]}/thumbnail").content == thumbnail
    original = api.get(f"/images/{ids[5]}/file")
    assert (
        original.status_code == 200
        and original.content == dict(images)[api.get(f"/images/{ids[5]}").json()["filename"]]
    )
    # the restored stack takes new images, and a second restore is refused: it is not empty any more
    more = upload(api, name, [("new.jpg", make_image(22_000, 80, 80))])["job_id"]
    assert wait_job(api, more)["state"] == "completed"
    again = api.post(f"/admin/backups/{backup_id}/restore", json={})
    assert again.status_code == 409, again.text


def test_a_backup_in_the_object_store_restores_a_lost_weaviate_redis_and_blob_store(
    s3_stacks: Stacks,
) -> None:
    """`clipsearch up --object-store`: Weaviate's backup-s3 module and the blob copy write to the same
    bucket; the machine loses everything but that bucket's backups."""
    api = s3_stacks.start()
    name = new_collection(api, "s3kept")
    images = [(f"s{i}.jpg", make_image(23_000 + i, 80, 64)) for i in range(12)]
    assert wait_job(api, upload(api, name, images)["job_id"])["state"] == "completed"
    before = searches(api, name)
    assert cli(["backup", "create", "--url", api.base]) == 0  # waits for the end
    [manifest] = api.get("/admin/backups").json()["backups"]
    backup_id = manifest["id"]
    assert manifest["target"] == f"s3://{BUCKET}/backups"
    assert manifest["state"] == "completed", manifest
    assert manifest["weaviate"]["backend"] == "s3" and manifest["blobs"]["files"] == 2 * len(images)
    assert (s3_stacks.backups / backup_id / "weaviate" / backup_id).is_dir()

    s3_stacks.stop()
    kept = s3_stacks.data_dir.parent / "kept-backups"
    shutil.move(s3_stacks.backups, kept)
    shutil.rmtree(s3_stacks.data_dir)
    s3_stacks.backups.parent.mkdir(parents=True)
    shutil.move(kept, s3_stacks.backups)
    api = s3_stacks.start()
    assert api.get(f"/collections/{name}").status_code == 404
    restore = api.post(f"/admin/backups/{backup_id}/restore", json={})
    assert restore.status_code == 202, restore.text
    status = wait_for(api, f"/admin/backups/{backup_id}/restore")
    assert status["state"] == "completed" and not status["mismatches"], status
    assert searches(api, name) == before
    hit = before["a photo"][0][0]
    original = api.get(f"/images/{hit}/file")
    assert (
        original.status_code == 200
        and original.content == dict(images)[api.get(f"/images/{hit}").json()["filename"]]
    )
