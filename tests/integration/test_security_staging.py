"""Issue 23, items 6, 7 and 11 over HTTP against the real stack: nothing staged outlives its request or
job (a failed request, a cancel, an open job left idle), open jobs are capped, and a job's failed items
come a page at a time. Every refusal is a 4xx with a reason, within 2 s."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from clipsearch.client import ApiClient
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, wait_job

pytestmark = pytest.mark.integration

REQUEST_S = 2.0  # the longest one refused request may take


def _files(names_and_data: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "image/jpeg")) for name, data in names_and_data]


def _timed(call: Callable[[], requests.Response]) -> requests.Response:
    started = time.monotonic()
    response = call()
    assert time.monotonic() - started < REQUEST_S, f"took {time.monotonic() - started:.2f} s"
    assert response.status_code < 500, response.text
    return response


def _refused(response: requests.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["message"] and error["details"]["reason"] == reason, error
    return error


def _staged(data_root: Path) -> set[Path]:
    """Every file in the stack's staging area (jobs' folders and the upload spool)."""
    return {p for p in (data_root / "staging").rglob("*") if p.is_file()}


def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _processed(api: Api, job_id: str, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (report := api.get(f"/jobs/{job_id}").json())["processed"] < count:
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
    return report


def test_a_failed_request_removes_every_part_it_staged(api: Api, data_root: Path) -> None:
    collection = new_collection(api, "stage")
    long_name = "x" * 9000 + ".jpg"  # werkzeug takes it; the plan refuses it, after 3 parts were staged
    parts = _files([(f"ok{i}.jpg", make_image(4100 + i)) for i in range(3)])
    parts.append(("files", (long_name, make_image(4103), "image/jpeg")))
    before = _staged(data_root)
    response = _timed(lambda: api.post(f"/collections/{collection}/images", files=parts))
    _refused(response, 400, "filename_too_long")
    # The spool of the refused part goes when the request closes, just after the answer.
    _until(lambda: not (_staged(data_root) - before), 5, f"left behind: {_staged(data_root) - before}")

    # The same through an open job (the page's folder upload): the job stays usable and holds nothing.
    job = api.post(f"/collections/{collection}/uploads", json={}).json()
    response = _timed(lambda: api.post(job["files_url"], files=parts))
    _refused(response, 400, "filename_too_long")
    _until(lambda: not (_staged(data_root) - before), 5, f"left behind: {_staged(data_root) - before}")
    assert api.get(job["status_url"]).json()["total"] == 0
    assert api.delete(f"/jobs/{job['job_id']}").status_code == 200
    assert api.delete(f"/collections/{collection}").status_code == 204


def test_cancel_removes_an_open_jobs_staged_files(api: Api, data_root: Path) -> None:
    collection = new_collection(api, "stage")
    job = api.post(f"/collections/{collection}/uploads", json={}).json()
    sent = api.post(job["files_url"], files=_files([(f"a{i}.jpg", make_image(4200 + i)) for i in range(2)]))
    assert sent.status_code == 202, sent.text
    _processed(api, job["job_id"], 2)
    folder = data_root / "staging" / job["job_id"]
    assert any(p.is_file() for p in folder.rglob("*")), "an open job keeps its staged files until it ends"
    cancelled = _timed(lambda: api.delete(f"/jobs/{job['job_id']}"))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert not folder.exists()
    refused = _timed(lambda: api.post(job["files_url"], files=_files([("b.jpg", make_image(4210))])))
    _refused(refused, 409, "job_ended")
    assert not folder.exists()
    assert api.delete(f"/collections/{collection}").status_code == 204


def test_an_idle_open_job_expires_and_its_staged_files_go(api: Api, data_root: Path) -> None:
    idle_s = float(api.get("/uploads/limits").json()["open_job_idle_s"])
    collection = new_collection(api, "stage")
    job = api.post(f"/collections/{collection}/uploads", json={}).json()
    sent = api.post(job["files_url"], files=_files([("a.jpg", make_image(4300))]))
    assert sent.status_code == 202, sent.text
    _processed(api, job["job_id"], 1)
    folder = data_root / "staging" / job["job_id"]
    assert folder.exists()
    # No file and nothing waiting: the sweep ends it after OPEN_JOB_IDLE_S (8 s here), swept every 0.5 s.
    deadline = time.monotonic() + idle_s + 20
    while (report := api.get(job["status_url"]).json())["state"] not in {"failed", "completed", "cancelled"}:
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
    assert report["state"] == "failed" and "OPEN_JOB_IDLE_S" in report["failure"], report
    assert report["done"] == 1  # what was indexed stays
    assert not folder.exists()
    refused = _timed(lambda: api.post(job["files_url"], files=_files([("b.jpg", make_image(4301))])))
    _refused(refused, 409, "job_ended")
    assert not folder.exists()
    assert api.delete(f"/collections/{collection}").status_code == 204


def test_open_jobs_are_capped(api: Api) -> None:
    cap = int(api.get("/uploads/limits").json()["max_open_jobs"])
    collection = new_collection(api, "stage")
    opened: list[str] = []
    response = None
    for _ in range(cap + 1):
        response = _timed(lambda: api.post(f"/collections/{collection}/uploads", json={}))
        if response.status_code != 201:
            break
        opened.append(response.json()["job_id"])
    assert response is not None and len(opened) <= cap
    error = _refused(response, 429, "too_many_open_jobs")
    assert "MAX_OPEN_JOBS" in error["message"]
    # when the least recently active of them can have expired: OPEN_JOB_IDLE_S (8 s here) and one sweep
    assert 1 <= int(response.headers["Retry-After"]) <= 9, response.headers.get("Retry-After")
    for job_id in opened:  # a cancel frees its slot at once
        assert api.delete(f"/jobs/{job_id}").status_code == 200
    again = api.post(f"/collections/{collection}/uploads", json={})
    assert again.status_code == 201, again.text
    assert api.delete(f"/jobs/{again.json()['job_id']}").status_code == 200
    assert api.delete(f"/collections/{collection}").status_code == 204


def _zip_of_failures(failures: int) -> bytes:
    """One image and `failures` empty entries (each a failed item with its reason)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("good.jpg", make_image(4400))
        for i in range(failures):
            archive.writestr(f"empty/{i:05d}.jpg", b"")
    return out.getvalue()


def test_failed_items_are_paged_and_the_cli_reads_every_page(api: Api) -> None:
    collection = new_collection(api, "stage")
    failures = 1200
    sent = api.post(
        f"/collections/{collection}/zip",
        files={"file": ("f.zip", _zip_of_failures(failures), "application/zip")},
    )
    assert sent.status_code == 202, sent.text
    job_id = sent.json()["job_id"]
    wait_job(api, job_id)
    first = _timed(lambda: api.get(f"/jobs/{job_id}")).json()
    assert first["failed"] == failures and first["errors_total"] == failures
    assert len(first["errors"]) == 100 and first["errors_next_offset"] == 100  # the default page
    assert first["errors"][0]["reason"] == "empty file (0 bytes)"
    page = _timed(
        lambda: api.get(f"/jobs/{job_id}", params={"failures_offset": 1000, "failures_limit": 1000})
    )
    body = page.json()
    assert len(body["errors"]) == failures - 1000 and body["errors_next_offset"] is None
    assert len(page.content) < 100_000
    too_many = _timed(lambda: api.get(f"/jobs/{job_id}", params={"failures_limit": 100_000}))
    assert too_many.status_code == 400, too_many.text
    # The CLI's client reads every page of a job that ended.
    every = ApiClient(api.base).all_failures(first)["errors"]
    assert len(every) == failures and len({e["file"] for e in every}) == failures
    assert api.delete(f"/collections/{collection}").status_code == 204
