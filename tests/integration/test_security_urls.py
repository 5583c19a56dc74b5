"""URL downloads over HTTP against the real stack: SSRF refusals, malformed URLs, deadline, size cap, batch.

The stack admits exactly one loopback target, 127.0.0.1:<url_port> (URL_ALLOW), where this module runs an
image server. A second loopback server, the canary, is what a URL must never reach: every test that
sends a URL pointing at it (directly or through a parser trick, an IPv6 form or a redirect) asserts that
the canary saw no request. URL_TIMEOUT_S is 3 in the test stack.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from clipsearch.processes import free_port
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, wait_job

TIMEOUT_S = 3.0  # URL_TIMEOUT_S of the test stack (conftest)
ENDPOINTS = ("urls", "embed", "compare-subject", "compare-prompt")


class _Canary(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        data = make_image(901)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _Images(BaseHTTPRequestHandler):
    images: ClassVar[dict[str, bytes]] = {}
    redirects: ClassVar[dict[str, str]] = {}
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.end_headers()
        elif self.path == "/slow-body":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self._trickle(b"x")
        elif self.path == "/slow-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._trickle(b"X-Slow: y\r\n")
        elif self.path == "/endless":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(1000):  # bounded: 64 MiB, over the 50 MiB URL_MAX_BYTES
                    self.wfile.write(b"\0" * 65536)
        elif self.path == "/declared-huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        else:
            data = self.images.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

    def _trickle(self, piece: bytes) -> None:
        with contextlib.suppress(OSError):  # the client hung up: what the test wants
            for _ in range(80):  # bounded: 20 s at most
                time.sleep(0.25)
                self.wfile.write(piece)
                self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


def _start(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def canary() -> Iterator[int]:
    server = _start(free_port(), _Canary)
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def images(url_port: int) -> Iterator[str]:
    _Images.images = {"/a.jpg": make_image(801), "/b.jpg": make_image(802), "/count.jpg": make_image(803)}
    server = _start(url_port, _Images)
    yield f"http://127.0.0.1:{url_port}"
    server.shutdown()


@pytest.fixture(autouse=True)
def _clear_hits() -> None:
    _Canary.hits.clear()
    _Images.hits.clear()


def _send(api: Api, endpoint: str, url: str, collection: str) -> tuple[int, dict[str, Any]]:
    """Send one URL to one endpoint; the status and JSON body."""
    if endpoint == "urls":
        response = api.post(f"/collections/{collection}/urls", json={"urls": [url]})
    elif endpoint == "embed":
        response = api.post("/embed/image", json={"images": [{"url": url}]})
    elif endpoint == "compare-subject":
        response = api.post("/compare", json={"subject": {"url": url}, "prompts": [{"text": "a photo"}]})
    else:
        response = api.post("/compare", json={"subject": {"text": "a photo"}, "prompts": [{"url": url}]})
    return response.status_code, response.json()


def _reason(endpoint: str, body: dict[str, Any]) -> str:
    error = body["error"]
    if endpoint == "urls":
        rejected = error["details"]["rejected"]
        assert len(rejected) == 1
        return str(rejected[0]["reason"])
    return str(error["message"])


def _assert_refused(api: Api, url: str, fragment: str, collection: str) -> None:
    for endpoint in ENDPOINTS:
        status, body = _send(api, endpoint, url, collection)
        assert status == 400, (endpoint, url, status, body)
        assert body["error"]["code"] == "invalid_input"
        assert fragment in _reason(endpoint, body), (endpoint, url, body)


# ---------------------------------------------------------------------------------- allowed
def test_the_allowed_target_still_works_everywhere(api: Api, images: str) -> None:
    embedded = api.post("/embed/image", json={"images": [{"url": f"{images}/a.jpg"}]})
    assert embedded.status_code == 200, embedded.text
    compared = api.post(
        "/compare", json={"subject": {"url": f"{images}/a.jpg"}, "prompts": [{"url": f"{images}/b.jpg"}]}
    )
    assert compared.status_code == 200, compared.text
    name = new_collection(api)
    job = api.post(f"/collections/{name}/urls", json={"urls": [f"{images}/a.jpg", f"{images}/b.jpg"]})
    assert job.status_code == 202, job.text
    assert wait_job(api, job.json()["job_id"])["done"] == 2
    assert _Images.hits.count("/a.jpg") == 3


# ---------------------------------------------------------------------------------- parser differential
def test_parser_differential_urls_are_refused_and_never_fetched(api: Api, images: str, canary: int) -> None:
    """urlsplit reads the host after the backslash or '@'; requests/urllib3 read it before. The URL
    must be refused whole, and nothing may reach the canary (or the API's own files)."""
    allowed = images.removeprefix("http://")
    api_netloc = api.base.removeprefix("http://")
    name = new_collection(api)
    cases = [
        (f"http://127.0.0.1:{canary}\\@{allowed}/a.jpg", "forbidden character"),
        (f"http://{api_netloc}\\@public.example/../images/x/file", "forbidden character"),
        (f"http://127.0.0.1:{canary}\\\\@{allowed}/a.jpg", "forbidden character"),
        (f"http://127.0.0.1:{canary}\\.{allowed}/a.jpg", "forbidden character"),
        (f"http://127.0.0.1:{canary}@{allowed}/a.jpg", "credentials"),
        (f"http://user:pass@{allowed}/a.jpg", "credentials"),
        (f"http://{allowed}@127.0.0.1:{canary}/a.jpg", "credentials"),
        (f"http://127.0.0.1:{canary}\t@{allowed}/a.jpg", "forbidden character"),
        (f"http://127.0.0.1:{canary}%5C@{allowed}/a.jpg", "credentials"),
    ]
    for url, fragment in cases:
        _assert_refused(api, url, fragment, name)
    assert _Canary.hits == []
    assert _Images.hits == []


# ---------------------------------------------------------------------------------- addresses
IPV4_EMBEDDING = [
    ("::7f00:1", "IPv4-compatible kind, embedding 127.0.0.1"),
    ("::ffff:127.0.0.1", "IPv4-mapped kind, embedding 127.0.0.1"),
    ("::ffff:0:7f00:1", "IPv4-translated kind, embedding 127.0.0.1"),
    ("2002:7f00:1::", "6to4 kind, embedding 127.0.0.1"),
    ("64:ff9b::7f00:1", "NAT64 kind, embedding 127.0.0.1"),
    ("64:ff9b:1::7f00:1", "NAT64 kind"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo kind, embedding 127.0.0.1"),
]
NON_GLOBAL = [
    ("[::1]", "loopback"),
    ("[fd00::1]", "private"),
    ("[fe80::1]", "link-local"),
    ("[fec0::1]", "site-local"),
    ("[ff02::1]", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("127.0.0.2", "loopback"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "non-global"),
    ("192.168.0.1", "private"),
    ("224.0.0.1", "multicast"),
    ("\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", "loopback"),  # full-width 127.0.0.1
]


def test_ipv6_forms_embedding_ipv4_and_non_global_addresses_are_refused(api: Api, canary: int) -> None:
    name = new_collection(api)
    cases = [(f"http://[{ip}]:{canary}/x.jpg", fragment) for ip, fragment in IPV4_EMBEDDING]
    cases += [(f"http://{host}:{canary}/x.jpg", fragment) for host, fragment in NON_GLOBAL]
    for url, fragment in cases:
        _assert_refused(api, url, fragment, name)
    # The whole list in one ingest request: every URL refused at planning, each with its reason.
    response = api.post(f"/collections/{name}/urls", json={"urls": [url for url, _ in cases]})
    assert response.status_code == 400, response.text
    reasons = [r["reason"] for r in response.json()["error"]["details"]["rejected"]]
    assert len(reasons) == len(cases)
    for (url, fragment), reason in zip(cases, reasons, strict=True):
        assert fragment in reason and "URL_ALLOW" in reason, (url, reason)
    assert _Canary.hits == []


def test_redirects_into_refused_addresses_are_refused_at_each_hop(api: Api, images: str, canary: int) -> None:
    _Images.redirects = {
        "/r-mapped": f"http://[::ffff:127.0.0.1]:{canary}/",
        "/r-backslash": f"http://127.0.0.1:{canary}\\@{images.removeprefix('http://')}/a.jpg",
        "/r-loopback": f"http://127.0.0.1:{canary}/",
        "/r-loop": "/r-loop",
        "/r-ok": "/a.jpg",
    }
    name = new_collection(api)
    cases = [
        ("/r-mapped", "IPv4-mapped"),
        ("/r-backslash", "forbidden character"),
        ("/r-loopback", "loopback"),
        ("/r-loop", "too many redirects"),
    ]
    for path, fragment in cases:
        for endpoint in ("embed", "compare-subject"):
            status, body = _send(api, endpoint, images + path, name)
            assert status == 400 and fragment in body["error"]["message"], (path, body)
    job = api.post(
        f"/collections/{name}/urls", json={"urls": [images + p for p, _ in cases] + [images + "/r-ok"]}
    )
    assert job.status_code == 202, job.text
    report = wait_job(api, job.json()["job_id"])
    assert report["done"] == 1
    reasons = {e["file"]: e["reason"] for e in report["errors"]}
    for path, fragment in cases:
        assert fragment in reasons[images + path], (path, reasons)
    assert _Canary.hits == []


# ---------------------------------------------------------------------------------- malformed
MALFORMED = [
    ("http://[::1", "invalid host or port"),
    ("http://a..b/", "invalid label"),
    ("http://", "no host"),
    ("http:///x.jpg", "no host"),
    ("http://:80/x.jpg", "no host"),
    ("http://127.0.0.1:99999/", "invalid port"),
    ("http://127.0.0.1:0/", "invalid port"),
    ("http://example.com:http/", "invalid host or port"),
    ("ftp://example.com/x.jpg", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
    ("example.com/x.jpg", "not a URL"),
    ("", "URL is empty"),
    ("http://exa mple.com/", "forbidden character"),
    ("http://example.com/a.jpg\r\nX-Injected: 1", "forbidden character"),
    ("http://example.com/\u0000", "forbidden character"),
    ("http://example.com/\u00a0", "forbidden character"),
    ("http://" + "a" * 64 + ".com/", "invalid label"),
    ("http://" + "a." * 130 + "com/", "longer than 253"),
    ("http://xn--a.com/", "punycode"),
    ("http://ex\u00e4mple..com/", "internationalised"),
    ("http://example.com/" + "a" * 5000, "URL_MAX_LENGTH"),
    ("http://[fe80::1%25eth0]/", "zone ids"),
    ("http://[127.0.0.1]/", "invalid IPv6"),
    ("http://2130706433/", "dotted-quad"),
    ("http://0x7f.0.0.1/", "dotted-quad"),
    ("http://127.1/", "dotted-quad"),
]


@pytest.mark.parametrize(("url", "fragment"), MALFORMED)
def test_malformed_urls_are_400_with_a_reason(api: Api, url: str, fragment: str) -> None:
    _assert_refused(api, url, fragment, new_collection(api))


def test_unresolvable_host_is_400(api: Api) -> None:
    """`.invalid` never resolves (RFC 6761): refused with the resolver's reason (or, where the resolver
    hangs, at the deadline)."""
    for endpoint in ("embed", "compare-subject", "compare-prompt"):
        status, body = _send(api, endpoint, "http://no-such-host.invalid/x.jpg", "")
        message = body["error"]["message"]
        assert status == 400 and ("cannot resolve" in message or "timed out" in message), body


# ---------------------------------------------------------------------------------- deadline, size
@pytest.mark.parametrize("path", ["/slow-body", "/slow-headers"])
def test_slow_server_is_cut_at_the_deadline(api: Api, images: str, path: str) -> None:
    for endpoint in ("embed", "compare-prompt"):
        started = time.monotonic()
        status, body = _send(api, endpoint, images + path, "")
        elapsed = time.monotonic() - started
        assert status == 400 and "timed out" in body["error"]["message"], body
        assert elapsed < TIMEOUT_S + 2, elapsed
    # Several slow URLs in one request share one deadline, so the request is no slower.
    started = time.monotonic()
    response = api.post("/embed/image", json={"images": [{"url": images + path}] * 4})
    assert response.status_code == 400 and "timed out" in response.json()["error"]["message"]
    assert time.monotonic() - started < TIMEOUT_S + 2


def test_slow_server_fails_the_ingest_item_not_the_worker(api: Api, images: str) -> None:
    name = new_collection(api)
    started = time.monotonic()
    job = api.post(f"/collections/{name}/urls", json={"urls": [f"{images}/slow-body", f"{images}/a.jpg"]})
    assert job.status_code == 202, job.text
    report = wait_job(api, job.json()["job_id"], timeout_s=60)
    assert time.monotonic() - started < 30
    assert report["done"] == 1
    assert "timed out" in {e["file"]: e["reason"] for e in report["errors"]}[f"{images}/slow-body"]


@pytest.mark.parametrize(
    ("path", "fragment"), [("/endless", "exceeds the limit"), ("/declared-huge", "over the limit")]
)
def test_oversized_download_is_refused(api: Api, images: str, path: str, fragment: str) -> None:
    status, body = _send(api, "embed", images + path, "")
    assert (
        status == 400 and fragment in body["error"]["message"] and "URL_MAX_BYTES" in body["error"]["message"]
    )


# ---------------------------------------------------------------------------------- batch before download
def test_compare_checks_the_batch_limit_before_any_download(api: Api, images: str) -> None:
    limit = 64  # MAX_BATCH default
    prompts = [{"url": f"{images}/count.jpg"}] * (limit + 1)
    response = api.post("/compare", json={"subject": {"url": f"{images}/count.jpg"}, "prompts": prompts})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["details"] == {"field": "prompts", "count": limit + 1, "limit": limit}
    many = api.post("/embed/image", json={"images": prompts})
    assert many.status_code == 413
    assert _Images.hits == []


def test_every_url_is_parsed_before_any_download(api: Api, images: str) -> None:
    good = {"url": f"{images}/count.jpg"}
    response = api.post("/compare", json={"subject": good, "prompts": [good, good, {"url": "http://[::1"}]})
    assert response.status_code == 400 and "invalid host" in response.json()["error"]["message"]
    embed = api.post("/embed/image", json={"images": [good, good, {"url": "http://a..b/"}]})
    assert embed.status_code == 400 and "invalid label" in embed.json()["error"]["message"]
    assert _Images.hits == []
