"""indexer.sources.urls: strict URL parsing, address classification, allow-list, pinning, deadline, size cap.

The servers here are tiny loopback HTTP servers in threads; nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from indexer.errors import InvalidInput
from indexer.sources import urls as url_fetch
from indexer.sources.urls import (
    UrlTimeout,
    address_refusal,
    check_url,
    fetch_url,
    is_allowed,
    parse_url,
)
from tests.preconditions import missing


# ------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://[::1", "invalid host or port"),
        ("http://a..b/", "invalid label"),
        ("http://", "no host"),
        ("http:///x", "no host"),
        ("http://:80/", "no host"),
        ("http:x", "no host"),
        ("http://127.0.0.1:99999/", "invalid port"),
        ("http://127.0.0.1:0/", "invalid port"),
        ("http://127.0.0.1:123456789012345678901234567890/", "invalid port"),
        ("http://h:port/", "invalid host or port"),
        ("http://h:80:80/", "invalid host or port"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("example.com/a.jpg", "not a URL"),
        ("", "empty"),
        (" ", "forbidden character"),
        ("http://exa mple.com/", "forbidden character"),
        ("http://example.com/a\tb", "forbidden character"),
        ("http://example.com/\r\nX-Injected: 1", "forbidden character"),
        ("http://example.com/\x00", "forbidden character"),
        ("http://example.com/\x7f", "forbidden character"),
        ("http://example.com/\u00a0", "forbidden character"),
        ("http://\u2028example.com/", "forbidden character"),
        ("http://127.0.0.1:8000\\@public.example/../images/x/file", "forbidden character"),
        ("http://127.0.0.1\\.public.example/", "forbidden character"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://127.0.0.1:1@example.com/", "credentials"),
        ("http://@example.com/", "credentials"),
        ("http://" + "a" * 64 + ".com/", "invalid label"),
        ("http://" + "a." * 130 + "com/", "longer than 253"),
        ("http://-bad-.com/", "invalid label"),
        ("http://xn--/", "invalid label"),
        ("http://xn--a.com/", "punycode"),
        ("http://ex\u00e4mple..com/", "internationalised"),
        ("http://exa%6dple.com/", "invalid label"),
        ("http://example.com/" + "a" * 3000, "URL_MAX_LENGTH"),
        ("http://[fe80::1%25eth0]/", "zone ids"),
        ("http://[127.0.0.1]/", "invalid IPv6"),
        ("http://[::1]x/", "invalid host or port"),
        ("http://0x7f000001/", "dotted-quad"),
        ("http://2130706433/", "dotted-quad"),
        ("http://127.1/", "dotted-quad"),
        ("http://0177.0.0.1/", "dotted-quad"),
        ("http://127.0.0.01/", "dotted-quad"),
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_url(url)
    assert fragment in caught.value.message


def test_non_string_url_is_refused() -> None:
    with pytest.raises(InvalidInput, match="must be a string"):
        parse_url(5)


@pytest.mark.parametrize(
    ("url", "expected", "host", "port"),
    [
        ("http://example.com", "http://example.com/", "example.com", 80),
        ("HTTPS://Example.COM:443/a?b=c#frag", "https://example.com/a?b=c", "example.com", 443),
        ("http://example.com:/a", "http://example.com/a", "example.com", 80),
        ("http://example.com./a", "http://example.com/a", "example.com", 80),
        (
            "http://ex\u00e4mple.com/caf\u00e9",
            "http://xn--exmple-cua.com/caf%C3%A9",
            "xn--exmple-cua.com",
            80,
        ),
        ("http://[::1]:8080/x", "http://[::1]:8080/x", "::1", 8080),
        ("http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "::ffff:7f00:1", 80),
        # Full-width digits and dots fold to 127.0.0.1 under UTS 46: the host is then an IPv4 literal.
        (
            "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/",
            "http://127.0.0.1/",
            "127.0.0.1",
            80,
        ),
    ],
)
def test_valid_urls_are_normalised(url: str, expected: str, host: str, port: int) -> None:
    target = parse_url(url)
    assert (target.url, target.host, target.port) == (expected, host, port)


# ------------------------------------------------------------------------------------------ addresses
@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-global"),
        ("192.0.0.9", "non-global"),
        ("198.18.0.1", "private"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "address"),
        ("255.255.255.255", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "private"),
        ("::7f00:1", "IPv4-compatible kind, embedding 127.0.0.1"),
        ("::ffff:127.0.0.1", "IPv4-mapped kind, embedding 127.0.0.1"),
        ("::ffff:0:7f00:1", "IPv4-translated kind, embedding 127.0.0.1"),
        ("2002:7f00:1::", "6to4 kind, embedding 127.0.0.1"),
        ("2002:a9fe:a9fe::1", "6to4 kind, embedding 169.254.169.254"),
        ("64:ff9b::7f00:1", "NAT64 kind, embedding 127.0.0.1"),
        ("64:ff9b::a00:1", "NAT64 kind, embedding 10.0.0.1"),
        ("64:ff9b:1::a00:1", "NAT64 kind"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo kind, embedding 127.0.0.1"),
        # Embedding a global IPv4 does not make them acceptable: there is no reason to fetch through one.
        ("::ffff:8.8.8.8", "IPv4-mapped"),
        ("2002:808:808::1", "6to4"),
        ("fe80::1%eth0", "scoped"),
        ("not-an-ip", "not an IP"),
    ],
)
def test_non_global_and_ipv4_embedding_addresses_are_refused(address: str, fragment: str) -> None:
    reason = address_refusal(address)
    assert reason is not None and fragment in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"])
def test_global_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


def test_allow_list_matches_host_or_host_and_port() -> None:
    assert is_allowed(parse_url("http://127.0.0.1:8080/"), ["127.0.0.1:8080"])
    assert not is_allowed(parse_url("http://127.0.0.1:8081/"), ["127.0.0.1:8080"])
    assert is_allowed(parse_url("http://127.0.0.1:8081/"), ["127.0.0.1"])
    assert is_allowed(parse_url("http://Images.Local./a"), ["images.local"])
    assert is_allowed(parse_url("http://[::1]:9000/"), ["[::1]:9000"])
    assert is_allowed(parse_url("http://[::1]:9000/"), ["::1"])
    assert not is_allowed(parse_url("http://[::ffff:127.0.0.1]:9000/"), ["127.0.0.1"])
    assert not is_allowed(parse_url("http://localhost:8080/"), ["127.0.0.1:8080"])


def test_check_url_refuses_a_name_that_resolves_to_loopback() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_url("http://images.test/a.jpg", [], resolver=lambda host, port: ["8.8.8.8", "127.0.0.1"])
    assert "resolves to 127.0.0.1, a loopback address" in caught.value.message
    assert check_url("http://images.test/a.jpg", [], resolver=lambda h, p: ["8.8.8.8"]).host == "images.test"


def test_dns_lookup_is_bounded_by_the_deadline() -> None:
    def hang(host: str, port: int) -> list[str]:
        time.sleep(5)
        return ["8.8.8.8"]

    started = time.monotonic()
    with pytest.raises(UrlTimeout, match="timed out resolving"):
        check_url("http://slow-dns.test/", [], timeout_s=0.3, resolver=hang)
    assert time.monotonic() - started < 2


# ------------------------------------------------------------------------------------------ servers
class _Handler(BaseHTTPRequestHandler):
    body: ClassVar[bytes] = b"vetted"
    hits: ClassVar[list[tuple[str, str]]]
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}

    def do_GET(self) -> None:
        self.hits.append((self.path, self.headers.get("Host", "")))
        status, headers, body = self.routes.get(self.path, (200, {}, self.body))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers and "X-No-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(
    host: str, port: int, body: bytes, routes: dict[str, tuple[int, dict[str, str], bytes]] | None = None
) -> tuple[ThreadingHTTPServer, list[tuple[str, str]]]:
    hits: list[tuple[str, str]] = []
    handler = type("H", (_Handler,), {"body": body, "hits": hits, "routes": routes or {}})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


@pytest.fixture()
def two_loopback_servers() -> Iterator[tuple[int, list[tuple[str, str]], list[tuple[str, str]]]]:
    """Server A on 127.0.0.1:P answers 'vetted', server B on 127.0.0.2:P (same port) answers 'rebound'."""
    a, a_hits = _serve("127.0.0.1", 0, b"vetted")
    port = a.server_address[1]
    try:
        b, b_hits = _serve("127.0.0.2", port, b"rebound")
    except OSError:
        a.shutdown()
        missing("127.0.0.2 is not usable here (Linux routes all of 127.0.0.0/8 to loopback)")
    yield port, a_hits, b_hits
    a.shutdown()
    b.shutdown()


def test_connection_goes_to_the_vetted_address_not_a_second_lookup(
    two_loopback_servers: tuple[int, list[tuple[str, str]], list[tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the first lookup answers 127.0.0.1, every later one 127.0.0.2. The download must
    use the first (vetted) answer; a client that resolves again itself would reach server B.

    The host is not on the allow-list, so the vetting runs; for this test 127.0.0.1 stands for a public
    address and 127.0.0.2 for an internal one."""
    port, a_hits, b_hits = two_loopback_servers
    monkeypatch.setattr(
        url_fetch, "address_refusal", lambda address: None if address == "127.0.0.1" else "internal"
    )
    calls: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, *args, **kwargs)
        calls.append(host)
        address = "127.0.0.1" if len(calls) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    body = fetch_url(
        f"http://rebind.test:{port}/a.jpg", allow=[], max_bytes=1000, timeout_s=5, max_redirects=0
    )
    assert body == b"vetted"
    assert calls == ["rebind.test"]
    assert a_hits == [("/a.jpg", f"rebind.test:{port}")]
    assert b_hits == []


def test_a_refused_address_is_never_connected(
    two_loopback_servers: tuple[int, list[tuple[str, str]], list[tuple[str, str]]],
) -> None:
    port, a_hits, _ = two_loopback_servers
    with pytest.raises(InvalidInput, match="loopback"):
        fetch_url(
            f"http://loop.test:{port}/",
            allow=[],
            max_bytes=1000,
            timeout_s=5,
            max_redirects=0,
            resolver=lambda host, p: ["127.0.0.1"],
        )
    assert a_hits == []


def test_every_redirect_hop_is_parsed_and_vetted_again() -> None:
    target, target_hits = _serve("127.0.0.1", 0, b"secret")
    routes = {
        "/to-backslash": (
            302,
            {"Location": f"http://127.0.0.1:1\\@127.0.0.1:{target.server_address[1]}/"},
            b"",
        ),
        "/to-mapped": (302, {"Location": f"http://[::ffff:127.0.0.1]:{target.server_address[1]}/"}, b""),
        "/to-other-port": (302, {"Location": f"http://127.0.0.1:{target.server_address[1]}/"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/relative": (302, {"Location": "/final"}, b""),
        "/final": (200, {}, b"final"),
        "/no-location": (302, {}, b""),
    }
    front, _ = _serve("127.0.0.1", 0, b"", routes)
    base = f"http://127.0.0.1:{front.server_address[1]}"
    allow = [f"127.0.0.1:{front.server_address[1]}"]
    try:
        for path, fragment in [
            ("/to-backslash", "forbidden character"),
            ("/to-mapped", "IPv4-mapped"),
            ("/to-other-port", "loopback"),
            ("/loop", "too many redirects"),
            ("/no-location", "without a Location"),
        ]:
            with pytest.raises(InvalidInput) as caught:
                fetch_url(base + path, allow=allow, max_bytes=1000, timeout_s=5, max_redirects=3)
            assert fragment in caught.value.message, (path, caught.value.message)
        assert target_hits == []
        assert (
            fetch_url(base + "/relative", allow=allow, max_bytes=1000, timeout_s=5, max_redirects=3)
            == b"final"
        )
    finally:
        front.shutdown()
        target.shutdown()


# ------------------------------------------------------------------------------------------ deadline, size
class _RawServer:
    """Accepts connections on loopback and runs `script(conn)` for each; for slow and lying peers."""

    def __init__(self, script: object) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                self.script(conn, self.stop)  # type: ignore[operator]
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def _trickle_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(100):  # bounded: at most 20 s
        if stop.wait(0.2):
            return
        conn.sendall(b"x")


def _trickle_headers(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for i in range(100):
        if stop.wait(0.2):
            return
        conn.sendall(f"X-{i}: y\r\n".encode())


def _trickle_chunked(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n")
    for _ in range(100):
        if stop.wait(0.2):
            return
        conn.sendall(b"x")


def _silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(20)


@pytest.mark.parametrize("script", [_trickle_body, _trickle_headers, _trickle_chunked, _silent])
def test_slow_peer_is_cut_at_the_wall_clock_deadline(script: object) -> None:
    server = _RawServer(script)
    try:
        started = time.monotonic()
        with pytest.raises(UrlTimeout, match="timed out"):
            fetch_url(
                f"http://127.0.0.1:{server.port}/slow",
                allow=[f"127.0.0.1:{server.port}"],
                max_bytes=1_000_000,
                timeout_s=1.0,
                max_redirects=0,
            )
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, elapsed
    finally:
        server.close()


def test_shared_deadline_is_honoured() -> None:
    server = _RawServer(_trickle_body)
    try:
        started = time.monotonic()
        with pytest.raises(UrlTimeout):
            fetch_url(
                f"http://127.0.0.1:{server.port}/slow",
                allow=[f"127.0.0.1:{server.port}"],
                max_bytes=1_000_000,
                timeout_s=30,
                max_redirects=0,
                deadline=time.monotonic() + 0.5,
            )
        assert time.monotonic() - started < 1.5
    finally:
        server.close()


def _endless(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    for _ in range(1000):  # bounded: 64 MB at most
        if stop.is_set():
            return
        conn.sendall(b"\0" * 65536)


def _lying_length(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")


@pytest.mark.parametrize(
    ("script", "fragment"),
    [(_endless, "exceeds the limit of 100000 bytes"), (_lying_length, "ended early")],
)
def test_size_cap_and_truncation(script: object, fragment: str) -> None:
    server = _RawServer(script)
    try:
        with pytest.raises(InvalidInput, match=fragment):
            fetch_url(
                f"http://127.0.0.1:{server.port}/",
                allow=[f"127.0.0.1:{server.port}"],
                max_bytes=100_000,
                timeout_s=5,
                max_redirects=0,
            )
    finally:
        server.close()


def test_declared_length_over_the_cap_is_refused_before_the_body() -> None:
    server, _ = _serve("127.0.0.1", 0, b"", {"/big": (200, {"Content-Length": "999999999"}, b"")})
    try:
        with pytest.raises(InvalidInput, match="999999999 bytes, over the limit"):
            fetch_url(
                f"http://127.0.0.1:{server.server_address[1]}/big",
                allow=["127.0.0.1"],
                max_bytes=1000,
                timeout_s=5,
                max_redirects=0,
            )
    finally:
        server.shutdown()


# ---------------------------------------------------------------------------------- https, pinned
@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[tuple[int, list[tuple[str, str]], ssl.SSLContext]]:
    """An https server on 127.0.0.1 with a self-signed certificate for images.test (openssl CLI)."""
    if shutil.which("openssl") is None:
        missing("no openssl binary (scripts/setup.sh installs Debian's openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=images.test",
         "-addext", "subjectAltName=DNS:images.test"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    server, hits = _serve("127.0.0.1", 0, b"over tls")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    client_context = ssl.create_default_context(cafile=str(cert))
    yield server.server_address[1], hits, client_context
    server.shutdown()


def test_https_connects_to_the_vetted_address_and_checks_the_name(
    tls_server: tuple[int, list[tuple[str, str]], ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, hits, context = tls_server
    monkeypatch.setattr(url_fetch, "_tls_context", lambda: context)
    body = fetch_url(
        f"https://images.test:{port}/a.jpg",
        allow=["images.test"],
        max_bytes=1000,
        timeout_s=5,
        max_redirects=0,
        resolver=lambda host, p: ["127.0.0.1"],
    )
    assert body == b"over tls"
    assert hits == [("/a.jpg", f"images.test:{port}")]
    # The same address under another name: the certificate does not match it, so nothing is fetched.
    with pytest.raises(InvalidInput, match="download failed"):
        fetch_url(
            f"https://other.test:{port}/a.jpg",
            allow=["other.test"],
            max_bytes=1000,
            timeout_s=5,
            max_redirects=0,
            resolver=lambda host, p: ["127.0.0.1"],
        )
    assert len(hits) == 1
