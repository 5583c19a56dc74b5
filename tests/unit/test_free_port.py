"""free_port never hands out the same port twice in a while, even when the kernel picks it again."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from clipsearch import processes
from clipsearch.processes import free_port
from clipsearch.weaviate_server import WeaviatePorts


def test_a_cluster_gets_distinct_ports() -> None:
    nodes = [WeaviatePorts() for _ in range(3)]
    ports = [p for node in nodes for p in node.named().values()] + [free_port() for _ in range(200)]
    assert len(ports) == len(set(ports))


def test_a_port_the_kernel_picks_again_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    picks = iter([40001, 40001, 40002])

    class Kernel:
        """A socket whose bind(0) gets the same port twice in a row, as the kernel may."""

        def __init__(self, *args: object) -> None:
            self.port = 0

        def __enter__(self) -> Kernel:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(picks)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(processes, "_HANDED", processes._HandedPorts())
    kernel = SimpleNamespace(socket=Kernel, AF_INET=socket.AF_INET, SOCK_STREAM=socket.SOCK_STREAM)
    monkeypatch.setattr(processes, "socket", kernel)  # this module's sockets only
    assert [free_port(), free_port()] == [40001, 40002]
