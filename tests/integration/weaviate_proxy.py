"""A counting TCP proxy on loopback, in front of one of Weaviate's ports (gRPC or REST).

It forwards bytes both ways untouched and counts the requests that the client sends:
- gRPC (HTTP/2): each client stream opened by a HEADERS frame is one call;
- REST (HTTP/1.1): each request line.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_HEADERS = 0x1
REQUEST_LINE = re.compile(rb"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /\S* HTTP/1\.[01]\r\n")


class _Http2Counter:
    """Parses the client's side of one HTTP/2 connection, frame by frame."""

    def __init__(self, found: Callable[[], None]) -> None:
        self.buffer = b""
        self.preface = True
        self.streams: set[int] = set()
        self.found = found

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.preface:
            if len(self.buffer) < len(H2_PREFACE):
                return
            assert self.buffer.startswith(H2_PREFACE), "not an HTTP/2 client"
            self.buffer = self.buffer[len(H2_PREFACE) :]
            self.preface = False
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[0:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind = self.buffer[3]
            stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
            if kind == H2_HEADERS and stream and stream not in self.streams:
                self.streams.add(stream)
                self.found()
            self.buffer = self.buffer[9 + length :]


class _Http1Counter:
    def __init__(self, found: Callable[[], None]) -> None:
        self.tail = b""
        self.found = found

    def feed(self, data: bytes) -> None:
        text = self.tail + data
        matches = list(REQUEST_LINE.finditer(text))
        for _ in matches:
            self.found()
        end = matches[-1].end() if matches else 0
        self.tail = text[max(end, len(text) - 64) :]  # a request line cut across two reads


class CountingProxy:
    def __init__(self, target_port: int, protocol: Literal["grpc", "http"]) -> None:
        self.target_port = target_port
        self.protocol = protocol
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self._count = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def requests(self) -> int:
        with self._lock:
            return self._count

    def reset(self) -> None:
        with self._lock:
            self._count = 0

    def _found(self) -> None:
        with self._lock:
            self._count += 1

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            counter = _Http2Counter(self._found) if self.protocol == "grpc" else _Http1Counter(self._found)
            threading.Thread(target=self._pump, args=(client, upstream, counter.feed), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, feed: Callable[[bytes], None] | None) -> None:
        try:
            while data := source.recv(65536):
                if feed is not None:
                    feed(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self.server.close()


@dataclass
class Counted:
    """An in-process API whose Weaviate traffic goes through counting proxies."""

    client: Any  # flask.testing.FlaskClient
    grpc: CountingProxy
    rest: CountingProxy

    def requests(self) -> tuple[int, int]:
        """(gRPC calls, REST requests) since the last call."""
        counts = (self.grpc.requests, self.rest.requests)
        self.grpc.reset()
        self.rest.reset()
        return counts

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(path, json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        found: dict[str, Any] = response.get_json()
        return found


@contextlib.contextmanager
def counted_app(settings: Any) -> Iterator[Counted]:
    """The API app built from ``settings`` (indexer.settings.Settings) with Weaviate's REST and gRPC
    ports behind counting proxies; its schema ensured once, as gunicorn's start-up does."""
    from search_api.app import create_app
    from search_api.services import EXTENSION_KEY, Services

    port = int(str(settings.weaviate_url).rsplit(":", 1)[1])
    grpc, rest = CountingProxy(settings.weaviate_grpc_port, "grpc"), CountingProxy(port, "http")
    app = create_app(
        settings.model_copy(
            update={"weaviate_url": f"http://127.0.0.1:{rest.port}", "weaviate_grpc_port": grpc.port}
        )
    )
    svc: Services = app.extensions[EXTENSION_KEY]
    svc.start()
    try:
        yield Counted(app.test_client(), grpc, rest)
    finally:
        svc.close()
        grpc.close()
        rest.close()
