"""Fetch images from http(s) URLs without letting a URL reach into our own network.

Loopback, private, link-local, multicast and reserved addresses are refused, after DNS resolution and
again at every redirect, unless `url_allow` admits the host (or host:port). Size and time are bounded.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import requests

from indexer.errors import InvalidInput

ALLOWED_SCHEMES = {"http", "https"}


def _blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_url(url: str, allow: list[str]) -> None:
    """Raise InvalidInput naming the reason when `url` must not be fetched."""
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_SCHEMES:
        raise InvalidInput(f"only http and https URLs are accepted, not {parts.scheme or 'none'!r}: {url}")
    host = parts.hostname
    if not host:
        raise InvalidInput(f"URL has no host: {url}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInput(f"URL has an invalid port: {url}") from exc
    if host in allow or f"{host}:{port}" in allow:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    for info in infos:
        address = str(info[4][0])
        if _blocked(address):
            raise InvalidInput(
                f"refused URL {url}: {host} resolves to {address}, a loopback, private, link-local or "
                "reserved address (add it to URL_ALLOW to permit it)"
            )


def fetch_url(url: str, *, allow: list[str], max_bytes: int, timeout_s: float, max_redirects: int) -> bytes:
    """GET `url`, following redirects by hand so that every hop is checked, within size and time limits."""
    deadline = time.monotonic() + timeout_s
    current = url
    with requests.Session() as session:
        session.trust_env = False  # no proxies from the environment
        for _ in range(max_redirects + 1):
            check_url(current, allow)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InvalidInput(f"download timed out after {timeout_s:.0f} s: {url}")
            try:
                response = session.get(current, stream=True, allow_redirects=False, timeout=remaining)
            except requests.RequestException as exc:
                raise InvalidInput(f"download failed: {exc.__class__.__name__}: {url}") from exc
            with response:
                if response.is_redirect:
                    current = urljoin(current, response.headers.get("location", ""))
                    continue
                if response.status_code != 200:
                    raise InvalidInput(f"download failed with HTTP {response.status_code}: {url}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise InvalidInput(f"download is {declared} bytes, over the limit of {max_bytes}: {url}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise InvalidInput(f"download exceeds the limit of {max_bytes} bytes: {url}")
                    if time.monotonic() > deadline:
                        raise InvalidInput(f"download timed out after {timeout_s:.0f} s: {url}")
                    chunks.append(chunk)
                return b"".join(chunks)
    raise InvalidInput(f"too many redirects (over {max_redirects}): {url}")
