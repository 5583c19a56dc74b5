"""The open default over HTTP against the real stack: Host allow-list (DNS rebinding), cross-site state
changes (CSRF), bounded metric labels, /health from worker heartbeats, and the managed Redis password."""

from __future__ import annotations

import re
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from clipsearch.redis_server import CONFIG_NAME
from clipsearch.stack import LocalStack
from indexer.jobs import heartbeat
from indexer.settings import Settings
from search_api.app import create_app
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, serve_in_thread

pytestmark = pytest.mark.integration

EVIL = "http://evil.example"
CROSS_SITE = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}


def _port(api: Api) -> int:
    return int(api.base.rsplit(":", 1)[1])


def _error(response: requests.Response) -> dict[str, object]:
    body: dict[str, object] = response.json()["error"]
    assert body["code"] and body["message"]
    return body


# -- Host allow-list -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "localhost.evil.example:{port}", "127.0.0.1.nip.io:{port}"],
)
def test_foreign_host_is_refused(api: Api, host: str) -> None:
    header = host.format(port=_port(api))
    for path in ("/health", "/collections", "/", "/openapi.json"):
        response = api.get(path, headers={"Host": header})
        assert response.status_code == 421, (path, response.text)
        error = _error(response)
        assert error["code"] == "untrusted_host" and "ALLOWED_HOSTS" in str(error["message"])


def test_foreign_host_cannot_change_state(api: Api) -> None:
    name = f"rebind-{uuid.uuid4().hex[:8]}"
    response = api.post("/collections", json={"name": name}, headers={"Host": f"evil.example:{_port(api)}"})
    assert response.status_code == 421
    assert api.get(f"/collections/{name}").status_code == 404


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "127.0.0.1"])
def test_loopback_hosts_are_answered(api: Api, host: str) -> None:
    response = api.get("/collections", headers={"Host": host.format(port=_port(api))})
    assert response.status_code == 200, response.text


# -- cross-site state changes ----------------------------------------------------------------------
def test_cross_site_post_is_refused_and_changes_nothing(api: Api) -> None:
    name = f"csrf-{uuid.uuid4().hex[:8]}"
    response = api.post("/collections", json={"name": name}, headers=CROSS_SITE)
    assert response.status_code == 403, response.text
    error = _error(response)
    assert error["code"] == "cross_site_refused" and EVIL in str(error["message"])
    assert api.get(f"/collections/{name}").status_code == 404


def test_cross_site_multipart_upload_is_refused(api: Api) -> None:
    collection = new_collection(api, "csrf")
    jpeg = make_image(7, 64, 64)
    for headers in (CROSS_SITE, {"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        # A form post: the kind of request a page may send across sites without a CORS preflight.
        response = api.post(
            f"/collections/{collection}/images",
            files=[("files", ("a.jpg", jpeg, "image/jpeg"))],
            headers=headers,
        )
        assert response.status_code == 403, (headers, response.text)
    assert api.get(f"/collections/{collection}").json()["count"] == 0


def test_cross_site_delete_and_other_origins_are_refused(api: Api) -> None:
    collection = new_collection(api, "csrf")
    port = _port(api)
    for headers in (
        CROSS_SITE,
        {"Origin": f"http://127.0.0.1:{port + 1}", "Sec-Fetch-Site": "same-site"},  # another port
        {"Origin": f"http://localhost:{port}", "Sec-Fetch-Site": "same-site"},  # another name
        {"Sec-Fetch-Site": "same-site"},
    ):
        response = api.delete(f"/collections/{collection}", headers=headers)
        assert response.status_code == 403, (headers, response.text)
    assert api.get(f"/collections/{collection}").status_code == 200


def test_same_origin_and_non_browser_posts_work(api: Api) -> None:
    port = _port(api)
    same = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    for headers in (same, {}, {"Sec-Fetch-Site": "none"}):
        name = f"ok-{uuid.uuid4().hex[:8]}"
        response = api.post("/collections", json={"name": name}, headers=headers)
        assert response.status_code == 201, (headers, response.text)
        assert api.delete(f"/collections/{name}", headers=headers).status_code in (200, 202, 204)
    # Reads of data across sites are refused too (issue 23; test_security_untrusted.py), and no answer
    # carries Access-Control-Allow-Origin.
    response = api.get("/collections", headers=CROSS_SITE)
    assert response.status_code == 403 and "Access-Control-Allow-Origin" not in response.headers


def test_allowed_origin_may_post(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"allowed_origins": ["https://ui.example.org"]}))
    with serve_in_thread(app) as base:
        name = f"ui-{uuid.uuid4().hex[:8]}"
        headers = {"Origin": "https://ui.example.org", "Sec-Fetch-Site": "cross-site"}
        assert (
            requests.post(base + "/collections", json={"name": name}, headers=headers, timeout=30).status_code
            == 201
        )
        headers = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
        assert requests.delete(f"{base}/collections/{name}", headers=headers, timeout=30).status_code == 403
        assert requests.delete(f"{base}/collections/{name}", timeout=30).status_code in (200, 202, 204)


# -- metrics labels --------------------------------------------------------------------------------
def _method_labels(text: str) -> set[str]:
    return set(re.findall(r'clipsearch_http_request_duration_seconds_count\{method="([^"]*)"', text))


def test_unknown_methods_do_not_grow_the_metric_labels(api: Api) -> None:
    before = api.get("/metrics").text
    methods = [f"FOO{uuid.uuid4().hex[:6].upper()}" for _ in range(5)] + ["FOOBAR"]
    for method in methods:
        response = api.request(method, "/health")
        assert response.status_code == 405, (method, response.text)
        assert _error(response)["code"] == "method_not_allowed"
    ids = [uuid.uuid4().hex for _ in range(3)]
    for image_id in ids:
        assert api.get(f"/no/such/{image_id}").status_code == 404
    after = api.get("/metrics").text
    labels = _method_labels(after)
    assert not any(method in labels for method in methods), labels
    assert labels <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other"}
    assert "other" in labels
    assert not any(image_id in after for image_id in ids)
    routes = set(re.findall(r'clipsearch_http_request_duration_seconds_count\{[^}]*route="([^"]*)"', after))
    assert all(route == "<unmatched>" or route.startswith("/") for route in routes)
    assert len(_method_labels(after)) <= len(_method_labels(before)) + 1  # at most "other" is new


# -- /health from heartbeats -----------------------------------------------------------------------
def test_sixteen_parallel_health_probes_answer_fast(api: Api, stack: LocalStack) -> None:
    base = api.base
    expected = sorted(proc.name for proc in stack.workers)
    # Warm (the model's status loads once), and let a worker killed by an earlier test expire.
    deadline = time.monotonic() + 15
    while requests.get(base + "/health", timeout=30).json()["parts"]["workers"].get("names") != expected:
        assert time.monotonic() < deadline, "the heartbeats never matched the stack's workers"
        time.sleep(0.2)

    def probe(_: int) -> tuple[float, int, dict[str, object]]:
        with requests.Session() as session:
            started = time.perf_counter()
            response = session.get(base + "/health", timeout=30)
            return time.perf_counter() - started, response.status_code, response.json()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(probe, range(16)))
    took = sorted(seconds for seconds, _, _ in results)
    print(f"16 parallel /health: p50 {statistics.median(took) * 1000:.1f} ms, max {took[-1] * 1000:.1f} ms")
    assert all(status == 200 for _, status, _ in results)
    for _, _, body in results:
        workers = body["parts"]["workers"]  # type: ignore[index]
        assert workers["ready"] and workers["names"] == expected, workers
    # The broadcast ping alone used to take a whole second per probe. 100 ms each on an idle machine;
    # the bound is generous for a loaded 2-core one, and still far below one ping.
    assert statistics.median(took) < 0.25, took
    assert took[-1] < 0.6, took


def test_health_without_heartbeats_reports_no_worker(stack: LocalStack, settings: Settings) -> None:
    # The real Redis, another database: no worker beats there.
    empty_db = re.sub(r"/0$", "/5", stack.redis_url)
    client = redis.Redis.from_url(empty_db)
    client.flushdb()
    app = create_app(settings.model_copy(update={"redis_url": empty_db}))
    with serve_in_thread(app) as base:
        response = requests.get(base + "/health", timeout=30)
        assert response.status_code == 503
        assert response.json()["parts"]["workers"] == {"ready": False, "count": 0, "names": []}
        # A heartbeat appears, then expires after three intervals, and the set forgets it.
        heartbeat.beat(client, "fake@host", 0.1)
        workers = requests.get(base + "/health", timeout=30).json()["parts"]["workers"]
        assert workers == {"ready": True, "count": 1, "names": ["fake@host"]}
        time.sleep(0.5)
        workers = requests.get(base + "/health", timeout=30).json()["parts"]["workers"]
        assert workers["names"] == [] and not client.sismember(heartbeat.WORKERS, "fake@host")
        heartbeat.beat(client, "gone@host", 60)
        heartbeat.forget(client, "gone@host")
        assert requests.get(base + "/health", timeout=30).json()["parts"]["workers"]["count"] == 0
    client.flushdb()


def test_workers_keep_their_heartbeat_alive(stack: LocalStack) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    names = [proc.name for proc in stack.workers]
    ttl_ms = heartbeat.ttl_ms(stack.settings.worker_heartbeat_s)
    time.sleep(ttl_ms / 1000 + 0.5)  # longer than one time to live: the key must have been renewed
    assert heartbeat.live_workers(client) == sorted(names)
    for name in names:
        assert 0 < int(client.pttl(heartbeat.PREFIX + name)) <= ttl_ms


def test_a_worker_that_stops_leaves_health_at_once(api: Api, stack: LocalStack) -> None:
    extra = stack.start_worker()
    try:
        deadline = time.monotonic() + 10
        while extra.name not in api.get("/health").json()["parts"]["workers"]["names"]:
            assert time.monotonic() < deadline, "the new worker's heartbeat never showed"
            time.sleep(0.1)
    finally:
        extra.stop()  # SIGTERM: a clean stop deletes the heartbeat key
        stack.workers.remove(extra)
    stopped = time.monotonic()
    names = api.get("/health").json()["parts"]["workers"]["names"]
    ttl_s = heartbeat.ttl_ms(stack.settings.worker_heartbeat_s) / 1000
    assert extra.name not in names and time.monotonic() - stopped < ttl_s, names
    assert names == sorted(proc.name for proc in stack.workers)


# -- managed Redis password ------------------------------------------------------------------------
def test_managed_redis_refuses_clients_without_the_password(stack: LocalStack) -> None:
    assert stack.redis is not None
    port = stack.redis.port
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password="wrong", socket_timeout=5).ping()
    with pytest.raises(redis.AuthenticationError):  # no enqueueing without it either
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).lpush("clipsearch", b"{}")
    assert redis.Redis.from_url(stack.redis_url, socket_timeout=5).ping()


def test_redis_password_is_private(stack: LocalStack) -> None:
    assert stack.redis is not None
    password = stack.redis.password
    config = stack.redis.config_path
    assert config.name == CONFIG_NAME and (config.stat().st_mode & 0o777) == 0o600
    for proc in stack.processes():
        assert proc.pid is not None
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert password.encode() not in cmdline, proc.name
    # The API and the worker got the URL with it: they work (the health checks Redis and heartbeats).
    assert stack.api is not None and stack.api.env is not None and password in stack.api.env["REDIS_URL"]
    assert all(proc.env is not None and password in proc.env["REDIS_URL"] for proc in stack.workers)
