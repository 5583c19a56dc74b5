"""HEIC, AVIF, JPEG XL and DNG over HTTP against the real stack: each indexes in display orientation with
its size, serves its original with the right content type and a JPEG thumbnail, and a bomb or a truncated
file of each is a 4xx with the reason (synchronously from /search/image, per item in an upload job)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
from PIL import Image

from tests import formatgen as g
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, wait_job

SCENE = g.scene(480, 320, seed=11)
FILES: dict[str, tuple[bytes, str, str]] = {  # filename: bytes, declared type, stored format
    "phone.heic": (g.heic(SCENE, orientation=6), "image/heic", "heic"),
    "web.avif": (g.avif(SCENE, orientation=6), "image/avif", "avif"),
    "scan.jxl": (g.jxl(SCENE, orientation=6), "image/jxl", "jxl"),
    "camera.dng": (g.dng(SCENE, orientation=6), "application/octet-stream", "dng"),
    "camera-preview.dng": (
        g.dng(g.scene(480, 320, seed=12), orientation=6, preview=g.scene(480, 320, seed=12)),
        "image/x-adobe-dng",
        "dng",
    ),
}
MIME = {
    "heic": "image/heic",
    "avif": "image/avif",
    "jxl": "image/jxl",
    "dng": "image/x-adobe-dng",
}


def _post(api: Api, name: str, files: list[tuple[str, bytes, str]]) -> dict[str, Any]:
    response = api.post(f"/collections/{name}/images", files=[("files", f) for f in files])
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def _records(api: Api, name: str) -> dict[str, dict[str, Any]]:
    hits = api.post("/search/text", json={"collection": name, "query": "anything", "limit": 50}).json()
    return {h["filename"]: api.get(f"/images/{h['id']}").json() for h in hits["results"]}


def _red_top_right(jpeg: bytes) -> bool:
    thumb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    h, w = thumb.shape[:2]
    red = np.array([220, 30, 30])
    top_right = np.abs(thumb[: h // 4, -w // 4 :] - red).mean()
    top_left = np.abs(thumb[: h // 4, : w // 4] - red).mean()
    return bool(top_right < 25 < top_left)


def test_new_formats_index_with_orientation_size_file_and_thumbnail(api: Api) -> None:
    name = new_collection(api, "fmt")
    report = wait_job(api, _post(api, name, [(n, d, t) for n, (d, t, _) in FILES.items()])["job_id"])
    assert (report["state"], report["done"], report["failed"]) == ("completed", len(FILES), 0), report
    records = _records(api, name)
    assert set(records) == set(FILES)
    for filename, (data, _, fmt) in FILES.items():
        record = records[filename]
        # orientation 6: the 480x320 scene is shown 320 wide, 480 high
        assert (record["format"], record["width"], record["height"]) == (fmt, 320, 480), record
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        original = api.get(f"/images/{record['id']}/file")
        assert original.status_code == 200 and original.content == data  # the original, byte for byte
        assert original.headers["Content-Type"] == MIME[fmt]
        thumb = api.get(f"/images/{record['id']}/thumbnail")
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.content)).size[0] < Image.open(io.BytesIO(thumb.content)).size[1]
        assert _red_top_right(thumb.content), filename


def test_search_by_a_heic_finds_it_first(api: Api) -> None:
    name = new_collection(api, "fmt")
    data = g.heic(g.scene(400, 300, seed=21))
    others = [(f"o{i}.jpg", g.jxl(g.scene(400, 300, seed=30 + i)), "image/jxl") for i in range(3)]
    wait_job(api, _post(api, name, [("q.heic", data, "image/heic"), *others])["job_id"])
    response = api.post(
        "/search/image", files={"image": ("q.heic", data, "image/heic")}, data={"collection": name}
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["filename"] == "q.heic"


BAD: dict[str, tuple[bytes, int, str]] = {  # filename: bytes, status, message fragment
    "bomb.heic": (g.heif_bomb(g.heic(SCENE)), 413, "9000x9000 = 81000000 pixels, over the limit of 64000000"),
    "bomb.avif": (g.heif_bomb(g.avif(SCENE)), 413, "9000x9000 = 81000000 pixels, over the limit of 64000000"),
    "bomb.jxl": (g.jxl_bomb(), 413, "9000x9000 = 81000000 pixels, over the limit of 64000000"),
    "bomb.dng": (g.dng_bomb(g.dng(SCENE)), 413, "9000x9000 = 81000000 pixels, over the limit of 64000000"),
    "cut.heic": (g.truncated(g.heic(SCENE), 0.6), 400, "truncated or corrupt HEIC"),
    "cut.avif": (g.truncated(g.avif(SCENE), 0.6), 400, "truncated or corrupt AVIF"),
    "cut.jxl": (g.truncated(g.jxl(SCENE), 0.6), 400, "truncated or corrupt JXL"),
    "cut.dng": (g.truncated(g.dng(SCENE), 0.6), 400, "truncated or corrupt DNG"),
}


def test_bombs_and_truncated_files_are_4xx_with_a_reason(api: Api) -> None:
    name = new_collection(api, "fmt")
    keep = g.jxl(g.scene(200, 150, seed=40))
    wait_job(api, _post(api, name, [("keep.jxl", keep, "image/jxl")])["job_id"])
    for filename, (data, status, fragment) in BAD.items():
        response = api.post(
            "/search/image",
            files={"image": (filename, data, "application/octet-stream")},
            data={"collection": name},
        )
        assert response.status_code == status, (filename, response.text)
        error = response.json()["error"]
        assert fragment in error["message"], (filename, error)
        assert error["details"]["reason"] == ("too_many_pixels" if status == 413 else "corrupt")
    # the same files in one upload: each fails alone with its reason, the good one beside them indexes
    good = ("ok.avif", g.avif(g.scene(200, 150, seed=41)), "image/avif")
    body = _post(api, name, [*[(n, d, "application/octet-stream") for n, (d, _, _) in BAD.items()], good])
    report = wait_job(api, body["job_id"])
    assert (report["done"], report["failed"]) == (1, len(BAD)), report
    reasons = {e["file"]: e["reason"] for e in report["errors"]}
    for filename, (_, _, fragment) in BAD.items():
        assert fragment in reasons[filename], (filename, reasons)
    assert api.get(f"/collections/{name}").json()["count"] == 2
