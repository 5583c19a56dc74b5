"""Fetch images from http(s) URLs without letting a URL reach into our own network.

The URL is parsed once, strictly, by `parse_url` (no backslashes, no credentials, no whitespace or control
characters, a valid port, an IDNA-valid host), and the request is built from those parts only, so no
second parser can read a different host out of the same string. The host is resolved once per hop and
every address must be global (loopback, private, link-local, multicast, reserved and the IPv6 forms that
embed an IPv4 address are refused) unless `URL_ALLOW` admits the host; the connection then goes to the
vetted address itself (DNS rebinding cannot swap it), with the Host header and TLS name of the URL.
Redirects are followed by hand, each hop checked again, a bounded number of times. One wall-clock deadline
covers resolution, connection, headers and body of every hop, and the body is capped in bytes.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import ipaddress
import itertools
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urljoin

import certifi  # already installed with requests: the CA bundle that requests itself uses
import idna  # already installed with requests: IDNA 2008 / UTS 46, as requests encodes hosts

from indexer.errors import InvalidInput

ALLOWED_SCHEMES = {"http": 80, "https": 443}
DEFAULT_MAX_URL_LENGTH = 2048
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
CHUNK = 64 * 1024
USER_AGENT = "clipsearch-url-fetch"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


# Control characters, whitespace and the backslash (which WHATWG parsers and urllib3 read as a path
# separator while urlsplit does not) have no place in a URL we fetch.
class UrlTimeout(InvalidInput):
    """A download (or its DNS lookup) ran past its deadline."""


_FORBIDDEN_CHARS = re.compile(
    r"[\x00-\x20\x7f\\\u0080-\u00a0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]"
)
_URL_RE = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?://(?P<authority>[^/?#]*))?(?P<path>[^?#]*)"
    r"(?:\?(?P<query>[^#]*))?(?:#.*)?$",
    re.DOTALL,
)
_LABEL_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL_RE = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")

# Networks refused whatever the Python version's idea of "global" is.
_BLOCKED_V4 = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]
_BLOCKED_V6 = [
    ipaddress.IPv6Network(n)
    for n in (
        "::/128",
        "::1/128",
        "100::/64",
        "2001:db8::/32",
        "2001:10::/28",
        "2001:20::/28",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]
# IPv6 forms that carry an IPv4 address: a v6 URL must not be a way round the v4 rules.
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")

_KINDS = (
    ("loopback", "a loopback address"),
    ("link_local", "a link-local address"),
    ("unspecified", "an unspecified address"),
    ("multicast", "a multicast address"),
    ("private", "a private address"),
    ("reserved", "a reserved address"),
)
_REFUSED_HELP = (
    "loopback, private, link-local, multicast, reserved and IPv4-embedding IPv6 addresses are refused "
    "(URL_ALLOW can admit a host or host:port)"
)


def _short(url: str, limit: int = 200) -> str:
    return url if len(url) <= limit else url[:limit] + "..."


@dataclass(frozen=True)
class Target:
    """A URL as we will request it: every part checked, nothing left for another parser to reinterpret."""

    scheme: str
    host: str  # lower-case ASCII name (IDNA) or an IP address without brackets
    port: int
    path: str  # the request target: path and query, ASCII
    ip: IPAddress | None  # the host when it is an IP literal

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        return host if self.port == ALLOWED_SCHEMES[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.path}"


def _encode_non_ascii(text: str) -> str:
    return re.sub(r"[^\x00-\x7f]+", lambda m: quote(m.group(), safe=""), text)


def _normalise_host(raw: str, url: str) -> tuple[str, IPAddress | None]:
    if raw.startswith("["):
        inner = raw[1:-1] if raw.endswith("]") else ""
        if not inner or "%" in inner:
            raise InvalidInput(
                f"URL has an invalid IPv6 host {raw!r} (zone ids are not accepted): {_short(url)}"
            )
        try:
            ip6 = ipaddress.IPv6Address(inner)
        except ValueError as exc:
            raise InvalidInput(f"URL has an invalid IPv6 host {raw!r}: {_short(url)}") from exc
        return str(ip6), ip6
    if not raw:
        raise InvalidInput(f"URL has no host: {_short(url)}")
    if raw.isascii():
        host = raw.lower()
    else:
        try:
            host = idna.encode(raw, uts46=True).decode("ascii").lower()
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise InvalidInput(
                f"URL host {raw!r} is not a valid internationalised name ({exc}): {_short(url)}"
            ) from exc
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        raise InvalidInput(f"URL host is empty or longer than 253 characters: {_short(url)}")
    labels = name.split(".")
    if _NUMERIC_LABEL_RE.match(labels[-1]):
        # A name whose last label is numeric is an IPv4 address; only the plain dotted quad is accepted
        # (no 127.1, 0x7f.0.0.1, 2130706433 or 0177.0.0.1 that resolvers read in surprising ways).
        try:
            ip4 = ipaddress.IPv4Address(name)
        except ValueError as exc:
            raise InvalidInput(
                f"URL host {raw!r} is not a valid dotted-quad IPv4 address: {_short(url)}"
            ) from exc
        return str(ip4), ip4
    for label in labels:
        if not _LABEL_RE.match(label):
            raise InvalidInput(f"URL host {raw!r} has an invalid label {label!r}: {_short(url)}")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError) as exc:
                raise InvalidInput(
                    f"URL host {raw!r} has an invalid punycode label {label!r}: {_short(url)}"
                ) from exc
    return name, None


def parse_url(url: object, max_length: int = DEFAULT_MAX_URL_LENGTH) -> Target:
    """Parse `url` strictly into the parts the request is built from; InvalidInput names what is wrong."""
    if not isinstance(url, str):
        raise InvalidInput("URL must be a string")
    if not url:
        raise InvalidInput("URL is empty")
    if len(url) > max_length:
        raise InvalidInput(
            f"URL is {len(url)} characters long, over the limit of {max_length} (URL_MAX_LENGTH)"
        )
    bad = _FORBIDDEN_CHARS.search(url)
    if bad:
        raise InvalidInput(
            f"URL contains a forbidden character {bad.group()!r} (whitespace, control characters and "
            f"backslashes are refused): {_short(url)!r}"
        )
    match = _URL_RE.match(url)
    if match is None:
        raise InvalidInput(f"not a URL: {_short(url)}")
    scheme = match["scheme"].lower()
    if scheme not in ALLOWED_SCHEMES:
        raise InvalidInput(f"only http and https URLs are accepted, not {scheme!r}: {_short(url)}")
    authority = match["authority"]
    if authority is None:
        raise InvalidInput(f"URL has no host (expected {scheme}://host/...): {_short(url)}")
    if "@" in authority:
        raise InvalidInput(f"URL must not carry credentials (user@host): {_short(url)}")
    hostport = re.match(r"^(\[[^\]]*\]|[^:\[\]]*)(?::([0-9]*))?$", authority)
    if hostport is None:
        raise InvalidInput(f"URL has an invalid host or port {authority!r}: {_short(url)}")
    raw_host, raw_port = hostport.group(1), hostport.group(2)
    if raw_port:
        if len(raw_port) > 5 or not 1 <= int(raw_port) <= 65535:
            raise InvalidInput(f"URL has an invalid port {raw_port!r} (1 to 65535): {_short(url)}")
        port = int(raw_port)
    else:
        port = ALLOWED_SCHEMES[scheme]
    host, ip = _normalise_host(raw_host, url)
    path = _encode_non_ascii(match["path"] or "/")
    if not path.startswith("/"):
        path = "/" + path
    if match["query"] is not None:
        path += "?" + _encode_non_ascii(match["query"])
    return Target(scheme=scheme, host=host, port=port, path=path, ip=ip)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    packed = ip.packed
    if ip in _IPV4_MAPPED:
        return "IPv4-mapped", ipaddress.IPv4Address(packed[12:])
    if ip in _IPV4_TRANSLATED:
        return "IPv4-translated", ipaddress.IPv4Address(packed[12:])
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return "IPv4-compatible", ipaddress.IPv4Address(packed[12:])
    if ip in _SIX_TO_FOUR:
        return "6to4", ipaddress.IPv4Address(packed[2:6])
    if ip in _TEREDO:
        return "Teredo", ipaddress.IPv4Address(bytes(b ^ 0xFF for b in packed[12:]))
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return "NAT64", ipaddress.IPv4Address(packed[12:])
    return None


def address_refusal(address: str | IPAddress) -> str | None:
    """Why a download must not connect to `address`, or None when it is an ordinary global address."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped IPv6 address"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            form, v4 = embedded
            return f"an IPv6 address of the {form} kind, embedding {v4}"
        blocked: list[ipaddress.IPv4Network] | list[ipaddress.IPv6Network] = _BLOCKED_V6
    else:
        blocked = _BLOCKED_V4
    for kind, words in _KINDS:
        if getattr(ip, f"is_{kind}"):
            return words
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if any(ip in net for net in blocked) or not ip.is_global:
        return "a special-purpose (non-global) address"
    return None


def _split_allow(entry: str) -> tuple[str, int | None] | None:
    entry = entry.strip().lower()
    bracket = re.match(r"^\[([^\]]+)\](?::(\d{1,5}))?$", entry)
    if bracket:
        host, port = bracket.group(1), bracket.group(2)
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, None
    if port is not None and not port.isdigit():
        return None
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = host.rstrip(".")
    return host, int(port) if port else None


def is_allowed(target: Target, allow: list[str]) -> bool:
    """Whether URL_ALLOW admits the target's host (any port) or host:port."""
    name = target.host.rstrip(".")
    for entry in allow:
        parsed = _split_allow(entry)
        if parsed and parsed[0] == name and parsed[1] in (None, target.port):
            return True
    return False


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve(target: Target, deadline: float, resolver: Resolver | None = None) -> list[str]:
    """The target's addresses, looked up once, within the deadline."""
    if target.ip is not None:
        return [str(target.ip)]
    lookup = resolver or _system_resolver
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise UrlTimeout(f"download timed out before {target.host!r} was resolved: {_short(target.url)}")
    # getaddrinfo has no timeout of its own: run it in a daemon thread and stop waiting at the deadline.
    result: list[list[str] | BaseException] = []

    def run() -> None:
        try:
            result.append(lookup(target.host, target.port))
        except BaseException as exc:  # handed back to the caller below
            result.append(exc)

    thread = threading.Thread(target=run, name="url-dns", daemon=True)
    thread.start()
    thread.join(remaining)
    if not result:
        raise UrlTimeout(f"download timed out resolving {target.host!r}: {_short(target.url)}")
    outcome = result[0]
    if isinstance(outcome, (OSError, UnicodeError)):
        reason = getattr(outcome, "strerror", None) or str(outcome)
        raise InvalidInput(f"cannot resolve host {target.host!r}: {reason}") from outcome
    if isinstance(outcome, BaseException):
        raise outcome
    addresses = outcome
    if not addresses:
        raise InvalidInput(f"cannot resolve host {target.host!r}: no addresses")
    return addresses


def vet(target: Target, addresses: list[str], allow: list[str]) -> list[str]:
    """The addresses to connect to; InvalidInput when any of them is refused and the host is not allowed."""
    if is_allowed(target, allow):
        return addresses
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            shown = target.host if target.ip is None else target.netloc
            raise InvalidInput(
                f"refused URL {_short(target.url)}: {shown} resolves to {address}, {reason}; {_REFUSED_HELP}"
            )
    return addresses


def check_url(
    url: str,
    allow: list[str],
    *,
    max_length: int = DEFAULT_MAX_URL_LENGTH,
    timeout_s: float = 20.0,
    resolver: Resolver | None = None,
) -> Target:
    """Parse, resolve and vet `url`; raise InvalidInput naming the reason when it must not be fetched."""
    target = parse_url(url, max_length)
    vet(target, resolve(target, time.monotonic() + timeout_s, resolver), allow)
    return target


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


class _Reaper:
    """One daemon thread per process that fires each download's watchdog at its deadline (a thread per
    download would cost a thread start, about 2 ms on a busy 2-core machine, on every fetch)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: float, watchdog: _Watchdog) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="url-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (deadline, next(self._ids), watchdog))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                watchdog = heapq.heappop(self._heap)[2]
            watchdog.fire()


_reaper = _Reaper()


def _new_reaper_in_child() -> None:
    global _reaper
    _reaper = _Reaper()  # a forked worker has neither the parent's thread nor a safe copy of its lock


os.register_at_fork(after_in_child=_new_reaper_in_child)


class _Watchdog:
    """Shuts the current socket down at the deadline, so that no slow peer can hold a download past it."""

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self.done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        _reaper.add(deadline, self)

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            fired = self.fired
        if fired and sock is not None:
            self._shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            sock = self._sock
        if sock is not None:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        with self._lock:
            self.done = True


def _connect(target: Target, addresses: list[str], deadline: float, watchdog: _Watchdog) -> socket.socket:
    errors: list[str] = []
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            sock = socket.create_connection((address, target.port), timeout=remaining)
        except OSError as exc:
            errors.append(f"{address}: {exc.strerror or exc}")
            continue
        watchdog.watch(sock)
        if target.scheme == "https":
            context = _tls_context()
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                tls = context.wrap_socket(sock, server_hostname=target.host)
            except (OSError, ValueError):
                sock.close()
                raise
            watchdog.watch(tls)
            return tls
        return sock
    if watchdog.fired or time.monotonic() >= deadline:
        raise TimeoutError("connect")
    raise InvalidInput(f"cannot connect to {target.netloc}: {'; '.join(errors) or 'no address'}")


def _get(
    target: Target, addresses: list[str], deadline: float, max_bytes: int, watchdog: _Watchdog
) -> tuple[int, str | None, bytes]:
    """One GET to one vetted address: status, Location (for redirects) and body (for 200)."""
    sock = _connect(target, addresses, deadline, watchdog)
    conn = http.client.HTTPConnection(target.host, target.port)
    conn.sock = sock
    try:
        conn.putrequest("GET", target.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", target.netloc)
        conn.putheader("User-Agent", USER_AGENT)
        conn.putheader("Accept", "image/*, */*;q=0.5")
        conn.putheader("Accept-Encoding", "identity")
        conn.putheader("Connection", "close")
        conn.endheaders()
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        response = conn.getresponse()
        if response.status in REDIRECT_STATUSES:
            return response.status, response.getheader("Location"), b""
        if response.status != 200:
            return response.status, None, b""
        declared = response.getheader("Content-Length")
        if declared and declared.strip().isdigit() and int(declared) > max_bytes:
            raise InvalidInput(
                f"download is {declared.strip()} bytes, over the limit of {max_bytes} (URL_MAX_BYTES): "
                f"{_short(target.url)}"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or watchdog.fired:
                raise TimeoutError("body")
            sock.settimeout(remaining)
            chunk = response.read1(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise InvalidInput(
                    f"download exceeds the limit of {max_bytes} bytes (URL_MAX_BYTES): {_short(target.url)}"
                )
            chunks.append(chunk)
        if watchdog.fired:
            raise TimeoutError("body")
        if response.length:  # the peer closed before the declared Content-Length
            raise InvalidInput(f"download ended early, {response.length} bytes short: {_short(target.url)}")
        return 200, None, b"".join(chunks)
    finally:
        conn.close()
        watchdog.watch(None)


def fetch_url(
    url: str,
    *,
    allow: list[str],
    max_bytes: int,
    timeout_s: float,
    max_redirects: int,
    max_length: int = DEFAULT_MAX_URL_LENGTH,
    deadline: float | None = None,
    resolver: Resolver | None = None,
) -> bytes:
    """GET `url` within one wall-clock deadline (`timeout_s` from now, or the earlier `deadline` given),
    following redirects by hand so that every hop is parsed, resolved, vetted and pinned again."""
    own = time.monotonic() + timeout_s
    deadline = own if deadline is None else min(deadline, own)
    limit = max(0.0, deadline - time.monotonic())
    watchdog = _Watchdog(deadline)
    current = url
    try:
        for _ in range(max_redirects + 1):
            target = parse_url(current, max_length)
            addresses = vet(target, resolve(target, deadline, resolver), allow)
            try:
                status, location, body = _get(target, addresses, deadline, max_bytes, watchdog)
            except InvalidInput:
                raise
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if watchdog.fired or time.monotonic() >= deadline:
                    raise UrlTimeout(
                        f"download timed out after {limit:.1f} s (URL_TIMEOUT_S): {_short(url)}"
                    ) from exc
                raise InvalidInput(f"download failed: {exc.__class__.__name__}: {_short(url)}") from exc
            if status == 200:
                return body
            if status in REDIRECT_STATUSES:
                if not location:
                    raise InvalidInput(f"redirect without a Location header: {_short(url)}")
                current = urljoin(target.url, location.strip())
                continue
            raise InvalidInput(f"download failed with HTTP {status}: {_short(url)}")
        raise InvalidInput(f"too many redirects (over {max_redirects}): {_short(url)}")
    finally:
        watchdog.cancel()
