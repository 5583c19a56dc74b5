"""The open default, in process: the Host allow-list, the cross-site refusal, the bind check (API,
`clipsearch serve/up`, the gunicorn entry), bounded metric labels and the managed Redis password file.
The same behaviour over HTTP against the real stack: tests/integration/test_security_exposure.py."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from clipsearch import cli
from clipsearch.redis_server import RedisServer
from indexer.errors import StartupError
from indexer.settings import Settings
from search_api.app import create_app
from search_api.guard import (
    HostAllowList,
    OriginPolicy,
    bind_host,
    check_bind,
    is_loopback_address,
    listening_addresses,
    split_host,
)
from search_api.metrics import method_label, status_label

ROOT = Path(__file__).resolve().parents[2]
DOWN_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture()
def app(tmp_path: Path) -> Flask:
    return create_app(
        Settings(data_dir=tmp_path, redis_url=DOWN_REDIS, allowed_origins="https://ui.example.org")
    )


# -- Host ------------------------------------------------------------------------------------------
def test_split_host() -> None:
    assert split_host("LocalHost:8000") == ("localhost", 8000)
    assert split_host("[::1]:8000") == ("[::1]", 8000)
    assert split_host("[::1]") == ("[::1]", None)
    assert split_host("example.com.") == ("example.com", None)
    for bad in (
        "",
        "::1",
        "[::1",
        "[nothost]:80",
        "a b",
        "host:port",
        "host:0",
        "host:70000",
        "h\x00st",
        "h/x",
    ):
        assert split_host(bad) is None, bad


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:1", "[::1]:8000", "127.0.0.42:80", "LOCALHOST:9"],
)
def test_loopback_hosts_are_allowed_by_default(host: str) -> None:
    assert HostAllowList.from_settings(Settings()).allows(host)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "127.0.0.1.nip.io:8000",
        "10.0.0.5:8000",
        "[::2]:8000",
        "0.0.0.0:8000",
        "",
        "local host",
        "[::1",
    ],
)
def test_foreign_hosts_are_refused_by_default(host: str) -> None:
    assert not HostAllowList.from_settings(Settings()).allows(host)


def test_allowed_hosts_and_api_host() -> None:
    settings = Settings(api_host="search.lan", allowed_hosts="photos.lan:8443, .example.org, 192.0.2.7")
    hosts = HostAllowList.from_settings(settings)
    assert hosts.allows("search.lan:8000") and hosts.allows("search.lan")
    assert hosts.allows("photos.lan:8443") and not hosts.allows("photos.lan:8444")
    assert hosts.allows("example.org") and hosts.allows("a.b.example.org:1")
    assert not hosts.allows("badexample.org")
    assert hosts.allows("192.0.2.7:8000")
    # A wildcard bind address is not a name anyone sends.
    assert not HostAllowList.from_settings(Settings(api_host="0.0.0.0")).allows("0.0.0.0:8000")
    assert HostAllowList(["*"]).allows("anything.example")
    with pytest.raises(StartupError, match="ALLOWED_HOSTS"):
        HostAllowList(["bad host"])


# -- Origin and Sec-Fetch-Site ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "origin", "site", "refused"),
    [
        ("POST", "http://evil.example", "cross-site", True),
        ("POST", "http://evil.example", None, True),
        ("DELETE", "http://127.0.0.1:9000", "same-site", True),  # another port: another origin
        ("PUT", "null", None, True),
        ("PATCH", "not a url", None, True),
        ("POST", None, "cross-site", True),
        ("POST", None, "same-site", True),
        ("FOOBAR", "http://evil.example", None, True),  # unknown methods are not safe
        ("POST", "http://127.0.0.1:8000", "same-origin", False),
        ("POST", "http://127.0.0.1:8000/", None, False),
        ("POST", "https://ui.example.org", "cross-site", False),  # ALLOWED_ORIGINS
        ("POST", "https://ui.example.org:443", "cross-site", False),
        ("POST", "http://ui.example.org", "cross-site", True),  # another scheme: another origin
        ("POST", None, "same-origin", False),
        ("POST", None, "none", False),
        ("POST", None, None, False),  # curl, requests, the CLI
        ("GET", "http://evil.example", "cross-site", False),  # reads are the browser's CORS business
        ("HEAD", None, "cross-site", False),
        ("OPTIONS", "http://evil.example", "cross-site", False),
    ],
)
def test_origin_policy(method: str, origin: str | None, site: str | None, refused: bool) -> None:
    policy = OriginPolicy(["https://ui.example.org"])
    assert (policy.refusal(method, origin, site, "127.0.0.1:8000") is not None) is refused


def test_same_origin_uses_default_ports() -> None:
    policy = OriginPolicy([])
    assert policy.refusal("POST", "https://search.example.com", None, "search.example.com") is None
    assert policy.refusal("POST", "http://search.example.com", None, "search.example.com:80") is None
    assert policy.refusal("POST", "http://search.example.com:8080", None, "search.example.com") is not None
    with pytest.raises(StartupError, match="ALLOWED_ORIGINS"):
        OriginPolicy(["ui.example.org"])


def test_guard_answers_json_in_the_app(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/openapi.json", headers={"Host": "evil.example:8000"})
    assert response.status_code == 421
    assert response.get_json()["error"]["code"] == "untrusted_host"
    assert "evil.example" in response.get_json()["error"]["message"]
    response = client.post(
        "/collections",
        json={"name": "x"},
        headers={"Host": "127.0.0.1:8000", "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403
    body = response.get_json()["error"]
    assert body["code"] == "cross_site_refused"
    assert body["details"]["origin"] == "http://evil.example"
    # An allowed origin gets past the guard (to the down Redis/Weaviate: never a 403 or 421).
    response = client.post(
        "/collections",
        json={"name": "x"},
        headers={
            "Host": "127.0.0.1:8000",
            "Origin": "https://ui.example.org",
            "Sec-Fetch-Site": "cross-site",
        },
    )
    assert response.status_code not in (403, 421)


# -- metrics labels --------------------------------------------------------------------------------
def test_metric_labels_are_bounded(app: Flask) -> None:
    assert (
        method_label("GET") == "GET" and method_label("FOOBAR") == "other" and method_label("get") == "other"
    )
    assert status_label(404) == "404" and status_label(999) == "other"
    client = app.test_client()
    for index in range(5):
        assert client.open(f"/health?i={index}", method=f"FOO{index}").status_code == 405
        assert client.get(f"/no/such/path/{index}").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert 'method="FOO' not in text and "/no/such/path" not in text
    assert 'method="other",route="<unmatched>",status="405"' in text
    assert 'method="GET",route="<unmatched>",status="404"' in text


# -- bind check ------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "", "192.0.2.10", "10.1.2.3", "2001:db8::1"])
def test_open_bind_without_keys_is_refused(host: str) -> None:
    assert not is_loopback_address(host)
    with pytest.raises(StartupError, match="ALLOW_OPEN_BIND=true") as caught:
        check_bind(host, Settings())
    assert "API_KEYS" in caught.value.message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.9", "localhost", "::1", "[::1]"])
def test_loopback_bind_is_fine(host: str) -> None:
    check_bind(host, Settings())


def test_open_bind_with_keys_or_consent_is_fine() -> None:
    check_bind("0.0.0.0", Settings(api_keys="k"))
    check_bind("0.0.0.0", Settings(allow_open_bind=True))


def test_bind_host_parsing() -> None:
    assert bind_host("0.0.0.0:8000") == "0.0.0.0"
    assert bind_host("[::]:8000") == "::"
    assert bind_host("127.0.0.1") == "127.0.0.1"
    assert bind_host("unix:/tmp/s.sock") is None


def _no_exec(*args: Any) -> None:
    raise AssertionError(f"exec reached: {args}")


def test_clipsearch_serve_refuses_an_open_bind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "execv", _no_exec)
    monkeypatch.setenv("ALLOW_OPEN_BIND", "false")
    monkeypatch.setenv("API_HOST", "127.0.0.1")
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "refusing to serve the API on 0.0.0.0" in err and "--allow-open" in err


def test_clipsearch_serve_allow_open_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_exec(path: str, argv: list[str]) -> None:
        seen.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", fake_exec)
    # cmd_serve sets these for gunicorn: monkeypatch restores them after the test.
    monkeypatch.setenv("ALLOW_OPEN_BIND", "false")
    monkeypatch.setenv("API_HOST", "127.0.0.1")
    with pytest.raises(SystemExit):
        cli.main(["serve", "--host", "0.0.0.0", "--port", "1", "--allow-open"])
    assert "0.0.0.0:1" in seen[0]
    assert os.environ["ALLOW_OPEN_BIND"] == "true"  # the gunicorn entry checks again


def test_clipsearch_up_refuses_an_open_bind_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("API_HOST", "0.0.0.0")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("something started")

    monkeypatch.setattr(cli.LocalStack, "start", never)
    monkeypatch.setattr(cli, "ensure_model", never)
    assert cli.main(["up"]) == 1
    assert "refusing to serve the API on 0.0.0.0" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_local_stack_refuses_an_open_bind(tmp_path: Path) -> None:
    from clipsearch.stack import LocalStack

    stack = LocalStack(Settings(data_dir=tmp_path, api_host="0.0.0.0"))
    with pytest.raises(StartupError, match="refusing to serve"):
        stack.start()
    assert not any(proc.alive() for proc in stack.processes())


def test_listening_addresses_sees_this_process_listeners() -> None:
    with socket.socket() as listener, socket.socket() as idle:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        idle.bind(("127.0.0.2", 0))  # bound, not listening: not counted
        found = listening_addresses()
    assert "127.0.0.1" in found
    assert "127.0.0.2" not in found


def _import_wsgi(
    tmp_path: Path, listening: list[str], extra_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    # The gunicorn entry with the listening sockets that gunicorn would hand it (this test binds nothing
    # beyond loopback, so it stands in for them).
    code = (
        "import search_api.guard as g\n"
        f"g.listening_addresses = lambda: {listening!r}\n"
        "import search_api.wsgi\n"
        "print('loaded')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEYS", "ALLOW_OPEN_BIND")}
    env.update({"DATA_DIR": str(tmp_path), "REDIS_URL": DOWN_REDIS, **extra_env})
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_gunicorn_entry_refuses_an_open_listener(tmp_path: Path) -> None:
    refused = _import_wsgi(tmp_path, ["0.0.0.0"], {})
    assert refused.returncode != 0
    assert "refusing to serve the API on 0.0.0.0" in refused.stderr
    assert "loaded" not in refused.stdout
    assert _import_wsgi(tmp_path, ["127.0.0.1"], {}).returncode == 0
    assert _import_wsgi(tmp_path, ["0.0.0.0"], {"ALLOW_OPEN_BIND": "true"}).returncode == 0
    assert _import_wsgi(tmp_path, ["::"], {"API_KEYS": "k"}).returncode == 0


# -- managed Redis password --------------------------------------------------------------------------
def test_managed_redis_password_file_is_private_and_off_the_command_line(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", tmp_path / "logs", port=1)
    other = RedisServer(tmp_path / "redis2", tmp_path / "logs", port=2)
    assert server.password != other.password and len(server.password) >= 32
    assert server.url == f"redis://:{server.password}@127.0.0.1:1/0"
    assert not any(server.password in arg for arg in server.process.argv)
    (tmp_path / "redis").mkdir()
    server.config_path.write_text("stale")
    server.config_path.chmod(0o644)
    server.write_config()
    assert stat.S_IMODE(server.config_path.stat().st_mode) == 0o600
    assert f"requirepass {server.password}" in server.config_path.read_text()
    assert str(server.config_path) in server.process.argv
