"""Untrusted bytes cannot hurt the service (issue 23): items 4 (scan bombs and the decode pool), 8 (JSON
bodies), 12 (/health) and 13 (cross-site reads), each over HTTP with its crafted input made here.

The session stack runs with DECODE_MAX_CPU_S=1 and a raised JPEG_MAX_SCAN_PIXELS (conftest.py), so that
a scan bomb under JPEG_MAX_SCANS reaches the decode pool, whose limits are what the second test shows.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from clipsearch.stack import LocalStack
from indexer.settings import Settings
from search_api.app import create_app
from tests.craft import scan_bomb
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, serve_in_thread, upload, wait_job

pytestmark = pytest.mark.integration

BOUND_S = 2.0  # each refusal answers within this
RSS_BOUND = 64 * 1024 * 1024  # what the API worker's peak resident set may grow by during the bombs


@pytest.fixture(scope="module")
def indexed(api: Api) -> dict[str, Any]:
    name = new_collection(api, "untrusted")
    files = {f"ok-{i}.jpg": make_image(2300 + i) for i in range(4)}
    report = wait_job(api, upload(api, name, list(files.items()))["job_id"])
    assert report["done"] == 4, report
    return {"name": name, "files": files}


def _api_workers(stack: LocalStack) -> list[int]:
    assert stack.api is not None and stack.api.pid is not None
    master = stack.api.pid
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _peak_growth(stack: LocalStack, during: Callable[[], None]) -> int:
    """Bytes by which the API workers' peak resident set grew while ``during`` ran (VmHWM reset first).
    gunicorn's worker processes only: the decode processes are their children, limited on their own."""
    workers = _api_workers(stack)
    for pid in workers:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = {pid: _kib(pid, "VmRSS") for pid in workers}
    during()
    return max(_kib(pid, "VmHWM") - before[pid] for pid in workers) * 1024


def _search_image(api: Api, collection: str, data: bytes) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = api.post(
        "/search/image", files={"image": ("q.jpg", data, "image/jpeg")}, data={"collection": collection}
    )
    return response, time.monotonic() - started


def _ordinary_searches(api: Api, indexed: dict[str, Any], stop: float) -> list[int]:
    """Text and image searches, one after another until ``stop``: their status codes."""
    codes = []
    query = next(iter(indexed["files"].values()))
    while time.monotonic() < stop or not codes:
        text = api.post("/search/text", json={"collection": indexed["name"], "query": "a photo"})
        image, _ = _search_image(api, indexed["name"], query)
        codes += [text.status_code, image.status_code]
    return codes


# -- item 4: progressive JPEG scan bombs --------------------------------------------------------------
def test_eight_parallel_scan_bombs_are_refused_fast_and_ordinary_searches_answer(
    api: Api, stack: LocalStack, indexed: dict[str, Any]
) -> None:
    bombs = [scan_bomb(512 + 64 * i, 512, 4000 + i) for i in range(8)]  # thousands of ~20-byte AC scans
    assert all(len(b) < 200_000 for b in bombs)
    outcomes: list[tuple[requests.Response, float]] = []
    searches: list[int] = []

    def attack() -> None:
        with ThreadPoolExecutor(9) as pool:
            ordinary = pool.submit(_ordinary_searches, api, indexed, time.monotonic() + 1.0)
            outcomes.extend(pool.map(lambda b: _search_image(api, indexed["name"], b), bombs))
            searches.extend(ordinary.result())

    growth = _peak_growth(stack, attack)
    for response, took in outcomes:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"]["reason"] == "too_many_scans"
        assert took < BOUND_S, took
    assert searches and set(searches) == {200}, searches
    assert growth < RSS_BOUND, f"the API's peak RSS grew by {growth / 2**20:.0f} MiB"


def test_bombs_past_every_check_cost_one_bounded_failure_each(
    api: Api, stack: LocalStack, indexed: dict[str, Any]
) -> None:
    """2000 scans (under the stack's JPEG_MAX_SCANS) over a 62 MP image: about 9 s of CPU each, past the
    stack's DECODE_MAX_CPU_S=3. Each is a 422 with the reason; the API holds none of the decode's memory, text
    searches answer meanwhile, and the pool's processes are replaced (an image search works after)."""
    bomb = scan_bomb(7900, 7900, 2000)
    outcomes: list[tuple[requests.Response, float]] = []
    texts: list[int] = []

    def attack() -> None:
        with ThreadPoolExecutor(5) as pool:
            stop = time.monotonic() + 2.0

            def text_searches() -> list[int]:
                codes = []
                while time.monotonic() < stop or not codes:
                    body = {"collection": indexed["name"], "query": "a photo"}
                    codes.append(api.post("/search/text", json=body, timeout=BOUND_S).status_code)
                return codes

            ordinary = pool.submit(text_searches)
            outcomes.extend(pool.map(lambda _: _search_image(api, indexed["name"], bomb), range(4)))
            texts.extend(ordinary.result())

    growth = _peak_growth(stack, attack)
    for response, took in outcomes:
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "decode_limit_exceeded" and error["details"]["reason"] == "decode_cpu_limit"
        assert took < 60, took  # queued behind the others for a pool process: 4 x 3 s of CPU on 2 cores
    print(f"4 bombs past the checks: {[round(took, 2) for _, took in outcomes]} s")
    assert texts and set(texts) == {200}, texts
    assert growth < RSS_BOUND, f"the API's peak RSS grew by {growth / 2**20:.0f} MiB"
    response, _ = _search_image(api, indexed["name"], next(iter(indexed["files"].values())))
    assert response.status_code == 200, response.text


def test_a_bomb_in_an_ingest_fails_alone_with_its_reason(api: Api) -> None:
    """The worker decodes through its own pool: the bomb is one failed item, the photo beside it indexes."""
    name = new_collection(api, "bomb-ingest")
    files = [("bomb.jpg", scan_bomb(7900, 7900, 2000)), ("fine.jpg", make_image(2400))]
    report = wait_job(api, upload(api, name, files)["job_id"])
    assert (report["state"], report["done"], report["failed"]) == ("completed", 1, 1), report
    (error,) = report["errors"]
    assert error["file"] == "bomb.jpg" and "DECODE_MAX_CPU_S" in error["reason"], error


# -- item 8: JSON bodies -------------------------------------------------------------------------------
def _raw(api: Api, path: str, head: bytes, body: bytes) -> tuple[int, bytes]:
    """One POST over a plain socket (status, body): an HTTP client library sends the whole body before
    it reads an answer, and a server that refuses a body unread may reset the connection first."""
    host, port = api.base.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=BOUND_S) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
            % (path.encode(), host.encode())
            + head
            + b"\r\n"
            + body
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert time.monotonic() - started < BOUND_S
    head_part, _, payload = received.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), payload


def _timed(call: Callable[[], requests.Response]) -> requests.Response:
    started = time.monotonic()
    response = call()
    assert time.monotonic() - started < BOUND_S
    return response


def test_json_bodies_are_bounded_before_parsing(api: Api, stack: LocalStack) -> None:
    headers = {"Content-Type": "application/json"}
    # By Content-Length alone: 20 MiB announced, none of it sent, and the answer comes at once.
    status, body = _raw(api, "/search/text", f"Content-Length: {20 * 2**20}\r\n".encode(), b"")
    assert status == 413 and json.loads(body)["error"]["details"]["reason"] == "json_too_large", body
    # Chunked, no Content-Length: the cap holds while the body streams in (one byte past it is enough).
    over = b'{"collection": "x", "query": "' + b"q" * 2**20 + b'"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (over[:65536], over[65536:]))
    status, body = _raw(api, "/search/text", b"Transfer-Encoding: chunked\r\n", chunked + b"0\r\n\r\n")
    assert status == 413 and json.loads(body)["error"]["details"]["reason"] == "json_too_large", body
    under = _timed(lambda: api.post("/search/text", json={"collection": "x", "query": "q" * 900_000}))
    assert under.status_code != 413  # under the cap: parsed (and refused for what it says)

    deep = b'{"collection": "x", "query": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    nested = _timed(lambda: api.post("/search/text", data=deep, headers=headers))
    assert nested.status_code == 400 and nested.json()["error"]["details"]["reason"] == "json_too_deep"
    shallow_deep = json.dumps({"collection": "x", "query": "q", "filters": json.loads("[" * 40 + "]" * 40)})
    assert _timed(lambda: api.post("/search/text", data=shallow_deep, headers=headers)).status_code == 400

    # A route that carries base64 images takes more than MAX_JSON_BYTES, but not 20 MiB of {} to parse.
    empties = b'{"images": [' + b"{}," * 7_000_000 + b"{}]}"

    def send_empties() -> None:
        refused = _timed(lambda: api.post("/embed/image", data=empties, headers=headers))
        assert refused.status_code == 400
        assert refused.json()["error"]["details"]["reason"] == "json_too_many_containers"

    assert _peak_growth(stack, send_empties) < RSS_BOUND
    images = {"images": ["aGVsbG8=" * 200_000]}  # 1.6 MB of base64: past MAX_JSON_BYTES, under the large cap
    accepted = _timed(lambda: api.post("/embed/image", json=images))
    assert accepted.status_code in (400, 415) and accepted.json()["error"]["code"] != "payload_too_large"


# -- item 12: /health ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed_url(settings: Settings) -> Iterator[str]:
    """The API with API_KEYS set, over real HTTP, on the session stack's Redis, Weaviate and worker."""
    with serve_in_thread(create_app(settings.model_copy(update={"api_keys": ["k-23"]}))) as url:
        yield url


def test_health_without_a_key_says_only_up_or_down(keyed_url: str) -> None:
    bare = _timed(lambda: requests.get(keyed_url + "/health", timeout=BOUND_S))
    body = bare.json()
    assert bare.status_code == 200 and body["status"] == "ok"
    assert set(body) == {"status", "parts"}
    model = body["parts"].pop("model")
    assert all(part == {"ready": True} for part in body["parts"].values()), body
    # The one model detail shown: whether results mean anything (the session stack runs the test model).
    assert model == {"ready": True, "is_test_model": True}, model
    assert "model_dir" not in bare.text and "version" not in bare.text
    wrong = requests.get(keyed_url + "/health", headers={"Authorization": "Bearer nope"}, timeout=BOUND_S)
    assert wrong.json() == {**body, "parts": {**body["parts"], "model": model}}
    keyed = requests.get(keyed_url + "/health", headers={"Authorization": "Bearer k-23"}, timeout=BOUND_S)
    details = keyed.json()
    assert (
        details["version"] and details["parts"]["model"]["model_id"] and details["parts"]["workers"]["names"]
    )


# -- item 13: cross-site reads -------------------------------------------------------------------------
def test_cross_site_reads_of_data_are_refused(api: Api, indexed: dict[str, Any]) -> None:
    name = indexed["name"]
    image_id = api.post("/search/text", json={"collection": name, "query": "a"}).json()["results"][0]["id"]
    thumbnail = f"/images/{image_id}/thumbnail"
    data_routes = [
        f"/collections/{name}/duplicates",
        f"/collections/{name}/edges",
        f"/collections/{name}/export",
        thumbnail,
        f"/images/{image_id}/file",
        "/collections",
    ]
    for site in ("cross-site", "same-site"):
        for path in data_routes:
            refused = _timed(lambda p=path, s=site: api.get(p, headers={"Sec-Fetch-Site": s}))  # type: ignore[misc]
            assert refused.status_code == 403, (path, refused.status_code)
            assert refused.json()["error"]["code"] == "cross_site_refused"
    other = _timed(lambda: api.get(f"/collections/{name}/edges", headers={"Origin": "http://evil.example"}))
    assert other.status_code == 403
    # The same request from the page itself, or from a client that is not a browser, is served, and the
    # thumbnail tells a browser not to hand it to another site's page.
    own = api.get(thumbnail, headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "image"})
    assert own.status_code == 200 and own.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert api.get(thumbnail).status_code == 200
    # A link to the page from another site still opens it.
    page = api.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert page.status_code == 200
