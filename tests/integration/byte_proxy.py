"""A loopback TCP proxy that counts the bytes it carries each way: put between the stack and a server, it
measures what the stack really transfers (headers included), with no hook inside the stack."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

from clipsearch.processes import LOOPBACK

BUFFER = 64 * 1024


class CountingProxy:
    """Forwards every connection to ``LOOPBACK:upstream_port``; ``received`` counts the server's bytes
    to the clients (answers), ``sent`` the clients' bytes to the server (requests)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self.listener.getsockname()[1]
        self.received = 0
        self.sent = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def counts(self) -> tuple[int, int]:
        """(received, sent) so far."""
        with self._lock:
            return self.received, self.sent

    def start(self) -> None:
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # the listener was closed
                return
            try:
                server = socket.create_connection((LOOPBACK, self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            self._spawn(self._pump, client, server, False)
            self._spawn(self._pump, server, client, True)

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(BUFFER):
                dst.sendall(data)
                with self._lock:
                    if answers:
                        self.received += len(data)
                    else:
                        self.sent += len(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, threads = list(self._sockets), list(self._threads)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        self.listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def counting_proxy(upstream_port: int) -> Iterator[CountingProxy]:
    proxy = CountingProxy(upstream_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
