"""Ingest over HTTP against the real stack: uploads, zips, folders, URLs, duplicates and bad input."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from indexer.settings import Settings
from tests.imagegen import make_image, make_zip
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.integration


def test_collection_lifecycle_and_errors(api: Api) -> None:
    name = new_collection(api)
    assert api.post("/collections", json={"name": name}).status_code == 409
    bad = api.post("/collections", json={"name": "../etc"})
    assert bad.status_code == 400 and "invalid collection name" in bad.json()["error"]["message"]
    listed = api.get("/collections").json()["collections"]
    assert any(c["name"] == name and c["count"] == 0 for c in listed)
    got = api.get(f"/collections/{name}").json()
    assert got["model_id"] and got["count"] == 0
    assert api.delete(f"/collections/{name}").status_code == 204
    assert api.get(f"/collections/{name}").status_code == 404


def test_collection_list_counts_each_collections_images(api: Api) -> None:
    """GET /collections counts every collection of a model in one grouped query: each count is its own."""
    two, one, empty = new_collection(api), new_collection(api), new_collection(api)
    for name, seeds in ((two, (7101, 7102)), (one, (7103,))):
        files = [(f"{seed}.jpg", make_image(seed)) for seed in seeds]
        assert wait_job(api, upload(api, name, files)["job_id"])["done"] == len(seeds)
    listed = {c["name"]: c["count"] for c in api.get("/collections").json()["collections"]}
    assert (listed[two], listed[one], listed[empty]) == (2, 1, 0)
    assert api.get(f"/collections/{two}").json()["count"] == 2


def test_upload_indexes_good_files_and_reports_every_bad_one(api: Api) -> None:
    name = new_collection(api)
    good = [(f"img{i}.jpg", make_image(100 + i)) for i in range(5)]
    truncated = make_image(999)[:400]
    files = [*good, ("empty.jpg", b""), ("notes.txt", b"hello, not an image"), ("cut.jpg", truncated)]
    accepted = upload(api, name, files, tags="holiday,beach", metadata='{"camera": "x100", "year": 2024}')
    assert accepted["accepted"] == 6
    assert {r["file"] for r in accepted["rejected"]} == {"empty.jpg", "notes.txt"}
    report = wait_job(api, accepted["job_id"])
    assert report["state"] == "completed"
    assert (report["total"], report["done"], report["failed"], report["duplicates"]) == (8, 5, 3, 0)
    reasons = {e["file"]: e["reason"] for e in report["errors"]}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["notes.txt"].startswith("not an image")
    assert "truncated or corrupt JPEG" in reasons["cut.jpg"]
    assert report["images_per_s"] > 0 and report["eta_s"] == 0
    assert api.get(f"/collections/{name}").json()["count"] == 5

    # The same bytes again: a no-op reported as duplicates.
    again = wait_job(api, upload(api, name, good)["job_id"])
    assert (again["done"], again["duplicates"], again["failed"]) == (0, 5, 0)
    assert api.get(f"/collections/{name}").json()["count"] == 5


def test_a_job_report_can_wait_for_the_job_to_end(api: Api) -> None:
    """GET /jobs/<id>?wait=S answers as soon as the job ends (long polling), so one request sees the end
    of a job that was still queued when it was asked; a wait out of bounds is refused with its reason."""
    name = new_collection(api)
    files = [(f"w{i}.jpg", make_image(7200 + i, 1600, 1200)) for i in range(12)]
    job = upload(api, name, files)["job_id"]
    report = api.get(f"/jobs/{job}", params={"wait": 30}).json()
    assert (report["state"], report["done"]) == ("completed", 12)
    assert api.get(f"/jobs/{job}", params={"wait": 0}).json()["state"] == "completed"
    for bad in ("-1", "31", "soon"):
        refused = api.get(f"/jobs/{job}", params={"wait": bad})
        assert refused.status_code == 400 and "wait" in refused.text, refused.text
    assert api.get(f"/jobs/{job}", params={"until": "done"}).status_code == 400


def test_stored_image_metadata_thumbnail_and_file(api: Api) -> None:
    name = new_collection(api)
    data = make_image(7, 800, 600)
    wait_job(api, upload(api, name, [("seven.jpg", data)], tags="a", metadata='{"k": "v"}')["job_id"])
    hit = api.post("/search/text", json={"collection": name, "query": "anything"}).json()["results"][0]
    record = api.get(f"/images/{hit['id']}").json()
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert (record["width"], record["height"], record["format"]) == (800, 600, "jpeg")
    assert record["tags"] == ["a"] and record["metadata"] == {"k": "v"} and record["collection"] == name
    thumb = api.get(record["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    assert thumb.headers["Content-Type"] == "image/jpeg"
    assert api.get(record["file_url"]).content == data
    assert api.get("/images/00000000-0000-0000-0000-000000000000").status_code == 404


def test_zip_upload_refuses_zip_slip_entries_and_indexes_the_rest(api: Api) -> None:
    name = new_collection(api)
    archive = make_zip(
        {
            "a.jpg": make_image(201),
            "dir/b.jpg": make_image(202),
            "../evil.jpg": make_image(203),
            "/abs.jpg": make_image(204),
        }
    )
    response = api.post(
        f"/collections/{name}/zip", files={"file": ("photos.zip", archive, "application/zip")}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert {r["file"] for r in body["rejected"]} == {"photos.zip:../evil.jpg", "photos.zip:/abs.jpg"}
    assert all("zip-slip" in r["reason"] for r in body["rejected"])
    report = wait_job(api, body["job_id"])
    assert (report["done"], report["failed"]) == (2, 2)


def test_zip_bomb_is_refused_whole(api: Api) -> None:
    name = new_collection(api)
    bomb = make_zip({"a.jpg": make_image(1), "zeros.jpg": b"\xff\xd8\xff" + bytes(40 * 1024 * 1024)})
    response = api.post(f"/collections/{name}/zip", files={"file": ("bomb.zip", bomb, "application/zip")})
    assert response.status_code == 413
    assert "zip bomb" in response.json()["error"]["message"]
    not_zip = api.post(
        f"/collections/{name}/zip", files={"file": ("x.zip", b"PK\x03\x04garbage", "application/zip")}
    )
    assert not_zip.status_code == 400 and "not a valid zip" in not_zip.json()["error"]["message"]


def test_folder_ingest_stays_inside_its_root(api: Api, folder_root: Path, tmp_path: Path) -> None:
    name = new_collection(api)
    folder = folder_root / "shoot"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.jpg").write_bytes(make_image(301))
    (folder / "sub" / "two.png").write_bytes(make_image(302, ext=".png"))
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(make_image(303))
    os.symlink(outside, folder / "link.jpg")
    response = api.post(f"/collections/{name}/folder", json={"path": str(folder)})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"][0]["reason"] == "symbolic link that points outside the allowed root"
    assert wait_job(api, body["job_id"])["done"] == 2
    refused = api.post(f"/collections/{name}/folder", json={"path": str(tmp_path)})
    assert (
        refused.status_code == 403
        and "not under an allowed folder root" in refused.json()["error"]["message"]
    )
    escape = api.post(f"/collections/{name}/folder", json={"path": str(folder / ".." / ".." / "..")})
    assert escape.status_code == 403


class _ImageServer(BaseHTTPRequestHandler):
    images: ClassVar[dict[str, bytes]] = {}
    # path -> (arrived, release): the answer to a held path waits until the test releases it
    held: ClassVar[dict[str, tuple[threading.Event, threading.Event]]] = {}
    redirect_to = ""

    def do_GET(self) -> None:
        if self.path in self.held:
            arrived, release = self.held[self.path]
            arrived.set()
            release.wait(timeout=60)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.end_headers()
            return
        data = self.images.get(self.path)
        self.send_response(200 if data else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server(url_port: int) -> Iterator[str]:
    _ImageServer.images = {"/a.jpg": make_image(401), "/b.jpg": make_image(402), "/text": b"plain text"}
    server = ThreadingHTTPServer(("127.0.0.1", url_port), _ImageServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{url_port}"
    server.shutdown()


def test_url_ingest_refuses_loopback_and_redirects_into_it(api: Api, image_server: str) -> None:
    name = new_collection(api)
    _ImageServer.redirect_to = "http://127.0.0.1:9/secret"
    urls = [
        f"{image_server}/a.jpg",
        f"{image_server}/b.jpg",
        f"{image_server}/missing",
        f"{image_server}/text",
        f"{image_server}/redirect",
        "http://127.0.0.1:6379/",
        "ftp://example.com/x.jpg",
        "http://10.0.0.1/x.jpg",
    ]
    response = api.post(f"/collections/{name}/urls", json={"urls": urls})
    assert response.status_code == 202, response.text
    rejected = {r["file"]: r["reason"] for r in response.json()["rejected"]}
    assert "loopback, private" in rejected["http://127.0.0.1:6379/"]
    assert "loopback, private" in rejected["http://10.0.0.1/x.jpg"]
    assert "only http and https" in rejected["ftp://example.com/x.jpg"]
    report = wait_job(api, response.json()["job_id"])
    assert report["done"] == 2
    reasons = {e["file"]: e["reason"] for e in report["errors"]}
    assert "HTTP 404" in reasons[f"{image_server}/missing"]
    assert (
        reasons[f"{image_server}/text"].startswith("not an image")
        or "unrecognised" in reasons[f"{image_server}/text"]
    )
    assert (
        "127.0.0.1:9" in reasons[f"{image_server}/redirect"]
        and "loopback" in reasons[f"{image_server}/redirect"]
    )
    alone = api.post(f"/collections/{name}/urls", json={"urls": ["http://127.0.0.1/"]})
    assert alone.status_code == 400 and alone.json()["error"]["details"]["rejected"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "fragment"),
    [
        (
            "POST",
            "/collections/nope/images",
            {"files": {"files": ("a.jpg", b"x")}},
            404,
            "unknown collection",
        ),
        (
            "POST",
            "/collections",
            {"data": "{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed JSON",
        ),
        ("POST", "/collections", {"data": "name=x"}, 415, "expected application/json"),
        ("GET", "/jobs/nope", {}, 404, "unknown job"),
    ],
)
def test_bad_requests_get_clear_4xx(
    api: Api, method: str, path: str, kwargs: dict[str, object], status: int, fragment: str
) -> None:
    response = api.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


def test_empty_multipart_and_all_bad_files_are_400(api: Api) -> None:
    name = new_collection(api)
    none = api.post(f"/collections/{name}/images", files={"other": ("a", b"x")})
    assert none.status_code == 400 and "no files" in none.json()["error"]["message"]
    bad = api.post(f"/collections/{name}/images", files=[("files", ("z.jpg", b"", "image/jpeg"))])
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["rejected"] == [{"file": "z.jpg", "reason": "empty file (0 bytes)"}]


def test_cancel_stops_a_running_chunk_and_nothing_is_indexed_after_it(
    api: Api, image_server: str, settings: Settings
) -> None:
    """A URL job of one chunk whose first item the image server holds: the worker is inside the chunk
    and no item has an outcome, so the job cannot end before the cancel arrives. After the cancel the
    item is answered, and the chunk must store nothing of what it reads from then on."""
    name = new_collection(api)
    token = uuid.uuid4().hex[:8]
    first = f"/held-{token}.jpg"
    rest = [f"/after-{token}-{i}.jpg" for i in range(7)]  # with the first: one chunk (INGEST_CHUNK_SIZE=8)
    for i, path in enumerate([first, *rest]):
        _ImageServer.images[path] = make_image(500 + i)
    arrived, release = threading.Event(), threading.Event()
    _ImageServer.held[first] = (arrived, release)
    try:
        response = api.post(
            f"/collections/{name}/urls", json={"urls": [image_server + p for p in [first, *rest]]}
        )
        assert response.status_code == 202, response.text
        job = response.json()["job_id"]
        assert arrived.wait(timeout=120), "no worker fetched the job's first item"
        cancelled = api.delete(f"/jobs/{job}")
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert (body["state"], body["processed"]) == ("cancelled", 0), body
        # The worker removes a cancelled job's staging area when its chunk stops: a marker put there now
        # goes when the worker's run of this chunk has ended, whichever way it ended.
        marker = settings.staging_dir / job / "cancel-marker"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_bytes(b"")
    finally:
        release.set()
        _ImageServer.held.pop(first, None)
    deadline = time.monotonic() + 120
    while marker.exists():
        assert time.monotonic() < deadline, "the cancelled chunk never stopped"
        time.sleep(0.1)
    report = api.get(f"/jobs/{job}").json()
    assert (report["state"], report["done"], report["duplicates"]) == ("cancelled", 0, 0), report
    assert api.get(f"/collections/{name}").json()["count"] == 0
    assert api.delete(f"/jobs/{job}").status_code == 409
