"""Who may talk to the API: the Host it answers for, the origins that may change state, where it binds.

A service on 127.0.0.1 without API keys is reachable from every web page the user opens: a page can post
a form across sites (a "simple" multipart POST needs no CORS preflight), and a DNS-rebinding page can
point its own name at 127.0.0.1 and then read the answers as same-origin. So:

- **Host allow-list** (DNS rebinding): the `Host` header must name this service: `localhost`, a loopback
  address (`127.0.0.1`, `[::1]`, ...), `API_HOST`, or an entry of `ALLOWED_HOSTS` ("name" for any port,
  "name:port", ".example.com" for a domain and its subdomains, "*" for no check). Anything else is a 421
  with the reason. A request without a Host header (HTTP/1.0 tools) passes: no browser sends one.
- **Cross-site state changes** (CSRF): POST, PUT, PATCH, DELETE (every method but GET, HEAD, OPTIONS
  and TRACE) are a 403 when the browser says another site sent them: an `Origin` that is neither the
  API's own (the Host header's host and port) nor in `ALLOWED_ORIGINS`, `Origin: null`, or, without an
  Origin, `Sec-Fetch-Site: cross-site|same-site`. Clients that send neither header (curl, requests, the
  CLI) are not browsers, and pass.
- **Cross-site reads** (issue 23): a GET or HEAD of anything but the page's shell, the docs and the
  health probe is a 403 on the same evidence (another site's Origin, or `Sec-Fetch-Site: cross-site|
  same-site`): a third-party page cannot fire `/duplicates`, `/export` or `/edges`, nor learn from an
  `<img src=".../thumbnail">` whether an image exists. Every answer carries
  `Cross-Origin-Resource-Policy: same-origin`, so a browser will not hand an image or thumbnail to
  another site's page even where no header says where a request came from.
- **Bind check**: the API refuses to start on a non-loopback address without `API_KEYS`, unless
  `ALLOW_OPEN_BIND=true` (`--allow-open`) says the network in front of it is trusted. `clipsearch serve`,
  `clipsearch up` and the gunicorn entry (search_api.wsgi) all check.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, request

from indexer.errors import CrossSiteRefused, MisdirectedRequest, StartupError
from indexer.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._[]:")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Endpoints another site may GET: the page's shell and assets (a link to the page is a cross-site
# navigation), the docs and the health probe (which says only up or down without a key).
CROSS_SITE_READABLE = frozenset({"web.index", "web.docs", "web.asset", "health.health"})


# -- parsing ---------------------------------------------------------------------------------------
def split_host(value: str) -> tuple[str, int | None] | None:
    """`name[:port]` or `[v6][:port]` as (lower-case name, port), or None when it is not a host."""
    value = value.strip().lower()
    if not value or any(ch not in _HOST_CHARS for ch in value):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[: end + 1], value[end + 1 :]
        with contextlib.suppress(ValueError):
            ipaddress.IPv6Address(host[1:-1])
            if not rest:
                return host, None
            if rest.startswith(":") and rest[1:].isdigit():
                return host, int(rest[1:])
        return None
    if value.count(":") > 1:
        return None  # a bare IPv6 address is not a valid Host
    host, sep, port = value.partition(":")
    host = host.rstrip(".")
    if not host or "[" in host or "]" in host:
        return None
    if not sep:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _bracket(host: str) -> str:
    """IPv6 literals in the bracketed form a Host header uses."""
    host = host.strip().lower()
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def is_loopback_literal(host: str) -> bool:
    """`localhost` or a loopback IP literal (127.0.0.0/8, ::1), without resolving anything."""
    host = host.strip().lower().strip("[]").rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- Host allow-list -------------------------------------------------------------------------------
class HostAllowList:
    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        self.names: set[str] = set()  # any port
        self.pairs: set[tuple[str, int]] = set()
        self.domains: list[str] = []  # ".example.com": the domain and every subdomain
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self.any = True
                continue
            if entry.startswith("."):
                self.domains.append(entry.rstrip("."))
                continue
            parsed = split_host(_bracket(entry) if entry.count(":") > 1 else entry)
            if parsed is None:
                raise StartupError(f"ALLOWED_HOSTS: {raw!r} is not a host name or host:port")
            name, port = parsed
            if port is None:
                self.names.add(name)
            else:
                self.pairs.add((name, port))

    @classmethod
    def from_settings(cls, settings: Settings) -> HostAllowList:
        entries = list(LOOPBACK_NAMES)
        if settings.api_host.strip().lower() not in WILDCARD_BINDS:
            entries.append(settings.api_host)
        return cls(entries + list(settings.allowed_hosts))

    def allows(self, header: str) -> bool:
        if self.any:
            return True
        parsed = split_host(header)
        if parsed is None:
            return False
        name, port = parsed
        if is_loopback_literal(name) or name in self.names:
            return True
        if port is not None and (name, port) in self.pairs:
            return True
        return any(name == domain[1:] or name.endswith(domain) for domain in self.domains)


# -- origins ---------------------------------------------------------------------------------------
def normalize_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of `scheme://host[:port]`, default ports filled in; None when malformed."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    return parts.scheme, _bracket(parts.hostname), port or _DEFAULT_PORTS[parts.scheme]


def same_origin(origin: tuple[str, str, int], host_header: str | None) -> bool:
    """Whether the Origin names this very service: the host and port the request was sent to. The
    scheme is not compared (a TLS-terminating proxy turns https into http on the way in)."""
    if not host_header:
        return False
    parsed = split_host(host_header)
    if parsed is None:
        return False
    scheme, host, port = origin
    name, host_port = parsed
    return host == name and port == (host_port or _DEFAULT_PORTS[scheme])


class OriginPolicy:
    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed: set[tuple[str, str, int]] = set()
        for raw in allowed:
            if not raw.strip():
                continue
            parsed = normalize_origin(raw)
            if parsed is None:
                raise StartupError(f"ALLOWED_ORIGINS: {raw!r} is not an origin like https://host[:port]")
            self.allowed.add(parsed)

    def refusal(
        self,
        method: str,
        origin: str | None,
        fetch_site: str | None,
        host_header: str | None,
        *,
        data_read: bool = False,
    ) -> str | None:
        """Why this request is refused as a cross-site state change (or, with ``data_read``, a
        cross-site GET or HEAD of data), or None when it may go on."""
        if method.upper() in SAFE_METHODS and not (data_read and method.upper() in ("GET", "HEAD")):
            return None
        verb = "read" if method.upper() in SAFE_METHODS else "change"
        if origin is not None:
            parsed = normalize_origin(origin)
            if parsed is not None and (same_origin(parsed, host_header) or parsed in self.allowed):
                return None
            return (
                f"a {method} from origin {origin!r} is refused: only pages of this service (or of "
                f"ALLOWED_ORIGINS) may {verb} data"
            )
        site = (fetch_site or "").strip().lower()
        if site in ("cross-site", "same-site"):
            return f"a {site} {method} is refused: only pages of this service may {verb} data"
        return None


def install_guard(app: Flask, settings: Settings) -> None:
    """Register the Host and cross-site checks on `app` (before the API-key check)."""
    hosts = HostAllowList.from_settings(settings)
    origins = OriginPolicy(settings.allowed_origins)

    @app.before_request
    def _guard() -> None:
        host = request.environ.get("HTTP_HOST")
        if host is not None and not hosts.allows(host):
            raise MisdirectedRequest(
                f"this service does not answer for host {host[:200]!r}; add it to ALLOWED_HOSTS if it "
                "is a name of this service",
                {"host": host[:200]},
            )
        reason = origins.refusal(
            request.method,
            request.headers.get("Origin"),
            request.headers.get("Sec-Fetch-Site"),
            host,
            data_read=request.endpoint not in CROSS_SITE_READABLE,
        )
        if reason is not None:
            raise CrossSiteRefused(
                reason,
                {
                    "origin": request.headers.get("Origin"),
                    "sec_fetch_site": request.headers.get("Sec-Fetch-Site"),
                },
            )

    @app.after_request
    def _same_origin_resources(response: Response) -> Response:
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response


# -- bind check ------------------------------------------------------------------------------------
def bind_host(bind: str) -> str | None:
    """The address of a gunicorn bind (`host:port`, `[v6]:port`, `host`); None for unix: and fd:."""
    bind = bind.strip()
    if bind.startswith(("unix:", "fd://")):
        return None
    if bind.startswith("["):
        return bind[1 : bind.find("]")] if "]" in bind else bind
    if bind.count(":") > 1:
        return bind  # a bare IPv6 address
    return bind.rpartition(":")[0] if ":" in bind else bind


def is_loopback_address(host: str) -> bool:
    """`host` is loopback: a literal, or a name whose every address is loopback."""
    if host.strip().lower() in WILDCARD_BINDS:
        return False
    if is_loopback_literal(host):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return False  # a literal that is not loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def check_bind(host: str, settings: Settings) -> None:
    """Raise StartupError when the API would listen beyond loopback with no API key and no consent."""
    if settings.api_keys or settings.allow_open_bind or is_loopback_address(host):
        return
    shown = host or "every address"
    raise StartupError(
        f"refusing to serve the API on {shown}: it is not a loopback address and API_KEYS is not set, so "
        "anyone who can reach it could read and change every collection. Set API_KEYS, bind to "
        "127.0.0.1, or, if the network in front of it is trusted, set ALLOW_OPEN_BIND=true "
        "(clipsearch serve/up --allow-open)",
        {"host": host},
    )


def listening_addresses() -> list[str]:
    """The addresses of the TCP sockets this process listens on (Linux: every fd in /proc/self/fd).
    The gunicorn entry uses it: its workers hold the listening sockets that the master bound."""
    found: list[str] = []
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return found
    for fd in fds:
        try:
            copy = os.dup(fd)
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=copy)
        except OSError:
            os.close(copy)
            continue
        with sock:
            try:
                if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
                    continue
                if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    continue
                found.append(str(sock.getsockname()[0]))
            except OSError:
                continue
    return found
