"""Folder uploads over HTTP (issue 16): an open job that several requests append to, completes only
once closed; the known-hash lookup; refusals after close or cancel; the newest-images page."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, wait_job

pytestmark = pytest.mark.integration


def _files(names_and_data: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "image/jpeg")) for name, data in names_and_data]


def test_open_job_takes_many_requests_and_completes_only_when_closed(api: Api) -> None:
    collection = new_collection(api, "open")
    limits = api.get("/uploads/limits").json()
    assert limits["max_request_bytes"] > 0 and limits["max_files_per_request"] >= 1
    opened = api.post(f"/collections/{collection}/uploads", json={"tags": ["folder"]})
    assert opened.status_code == 201, opened.text
    job = opened.json()
    images = [(f"trip/day{i % 2}/{i}.jpg", make_image(3100 + i)) for i in range(5)]
    first = api.post(job["files_url"], files=_files(images[:3]))
    assert first.status_code == 202, first.text
    assert first.json()["total"] == 3
    # A refused file is listed with its reason, and still counts in the job (as failed).
    second = api.post(
        job["files_url"], files=[*_files(images[3:]), ("files", ("notes.txt", b"hi", "text/plain"))]
    )
    assert second.status_code == 202, second.text
    body = second.json()
    assert body["accepted"] == 2 and body["total"] == 6
    assert [r["file"] for r in body["rejected"]] == ["notes.txt"]

    # Every file processed, but the job stays open until it is closed. The last outcome and the move to
    # `completed` are one atomic script, and a report reads the counts and the state in one read: the
    # report that first shows all 6 outcomes is the moment a wrongly completed job would show it.
    deadline = time.monotonic() + 60
    while (report := api.get(job["status_url"]).json())["processed"] < 6:
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
    assert report["state"] == "running" and report["total"] == 6, report
    assert report["finished_at"] is None
    closed = api.post(job["close_url"])
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "completed"
    final = wait_job(api, job["job_id"])
    assert (final["done"], final["failed"], final["total"]) == (5, 1, 6)

    # Closed: no more files.
    again = api.post(job["files_url"], files=_files(images[:1]))
    assert again.status_code == 409, again.text

    # The stored relative paths, newest first, and the hashes the collection now knows.
    page = api.get(f"/collections/{collection}/images", params={"limit": 3}).json()
    assert page["total"] == 5 and len(page["images"]) == 3
    assert all(i["filename"].startswith("trip/day") for i in page["images"])
    stamps = [i["ingested_at"] for i in page["images"]]
    assert stamps == sorted(stamps, reverse=True)
    rest = api.get(f"/collections/{collection}/images", params={"limit": 3, "offset": 3}).json()
    assert len(rest["images"]) == 2
    assert {i["id"] for i in page["images"]}.isdisjoint(i["id"] for i in rest["images"])
    shas = [hashlib.sha256(data).hexdigest() for _, data in images]
    unknown = hashlib.sha256(b"never uploaded").hexdigest()
    found = api.post(f"/collections/{collection}/known", json={"sha256": [*shas, unknown]}).json()
    assert sorted(found["known"]) == sorted(shas)
    bad = api.post(f"/collections/{collection}/known", json={"sha256": ["XYZ"]})
    assert bad.status_code == 400
    assert api.delete(f"/collections/{collection}").status_code == 204


def test_cancelled_open_job_refuses_files_and_close_of_an_empty_job_completes(api: Api) -> None:
    collection = new_collection(api, "open")
    job = api.post(f"/collections/{collection}/uploads", json={}).json()
    assert api.delete(f"/jobs/{job['job_id']}").json()["state"] == "cancelled"
    refused = api.post(job["files_url"], files=_files([("a.jpg", make_image(3200))]))
    assert refused.status_code == 409 and refused.json()["error"]["details"]["reason"] == "job_ended"
    empty = api.post(f"/collections/{collection}/uploads", json={}).json()
    assert api.post(empty["close_url"]).json()["state"] == "completed"
    assert (
        api.post("/jobs/" + "0" * 32 + "/files", files=_files([("a.jpg", make_image(3201))])).status_code
        == 404
    )
    assert api.delete(f"/collections/{collection}").status_code == 204
