"""The managed local Weaviate: a single node bound to loopback, telemetry off, no outside modules."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import requests

from clipsearch.processes import LOOPBACK, ManagedProcess, ensure_port_free, ensure_writable_dir, free_port
from indexer.errors import StartupError

READY_PATH = "/v1/.well-known/ready"


def _free_port_pair() -> int:
    """A free port p whose neighbour p + 1 is free too."""
    for _ in range(100):
        port = free_port()
        try:
            ensure_port_free(port + 1, "probe")
        except StartupError:
            continue
        return port
    raise StartupError("no pair of adjacent free ports found on 127.0.0.1")


@dataclass
class WeaviatePorts:
    """Every port a single node opens.

    With CLUSTER_IN_LOCALHOST, Weaviate reaches a node's Raft RPC server at its Raft port + 1
    (cluster/resolver/rpc.go), so those two are allocated as a pair.
    """

    http: int = field(default_factory=free_port)
    grpc: int = field(default_factory=free_port)
    gossip: int = field(default_factory=free_port)
    data: int = field(default_factory=free_port)
    raft: int = field(default_factory=_free_port_pair)

    @property
    def raft_rpc(self) -> int:
        return self.raft + 1

    def named(self) -> dict[str, int]:
        return {
            "Weaviate HTTP": self.http,
            "Weaviate gRPC": self.grpc,
            "Weaviate gossip": self.gossip,
            "Weaviate cluster data": self.data,
            "Weaviate Raft": self.raft,
            "Weaviate Raft RPC": self.raft_rpc,
        }


def weaviate_env(data_path: Path, ports: WeaviatePorts) -> dict[str, str]:
    """The environment that a single loopback-only node needs (after weaviate-client's embedded.py)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLUSTER_", "RAFT_"))}
    env.update(
        {
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
            "PERSISTENCE_DATA_PATH": str(data_path),
            "DEFAULT_VECTORIZER_MODULE": "none",
            "ENABLE_MODULES": "",
            "DISABLE_TELEMETRY": "true",
            "GO_PROFILING_DISABLE": "true",
            "PROMETHEUS_MONITORING_ENABLED": "false",
            "QUERY_DEFAULTS_LIMIT": "20",
            "LIMIT_RESOURCES": "true",
            "LOG_LEVEL": "warning",
            "CLUSTER_HOSTNAME": "clipsearch-node",
            "CLUSTER_IN_LOCALHOST": "true",
            "CLUSTER_BIND_ADDR": LOOPBACK,
            "CLUSTER_GOSSIP_BIND_PORT": str(ports.gossip),
            "CLUSTER_DATA_BIND_PORT": str(ports.data),
            "GRPC_PORT": str(ports.grpc),
            "RAFT_PORT": str(ports.raft),
            "RAFT_INTERNAL_RPC_PORT": str(ports.raft_rpc),
            "RAFT_BOOTSTRAP_EXPECT": "1",
        }
    )
    return env


class WeaviateServer:
    """Start and stop the Weaviate binary that scripts/build_weaviate.sh built and cached."""

    def __init__(
        self, binary: Path, data_dir: Path, log_dir: Path, ports: WeaviatePorts | None = None
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.ports = ports or WeaviatePorts()
        self.process = ManagedProcess(
            "weaviate",
            [
                str(binary),
                "--host",
                LOOPBACK,
                "--port",
                str(self.ports.http),
                "--scheme",
                "http",
                "--read-timeout",
                "600s",
                "--write-timeout",
                "600s",
            ],
            log_dir / "weaviate.log",
            env=weaviate_env(data_dir, self.ports),
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.http}"

    def _ready(self) -> bool:
        return requests.get(self.url + READY_PATH, timeout=1).status_code == 200

    def start(self, timeout_s: float = 90.0) -> None:
        if not self.binary.is_file():
            raise StartupError(
                f"Weaviate binary not found at {self.binary}; run scripts/setup.sh to build it",
                {"path": str(self.binary)},
            )
        ensure_writable_dir(self.data_dir, "Weaviate")
        for purpose, port in self.ports.named().items():
            ensure_port_free(port, purpose)
        self.process.start()
        self.process.wait_ready(self._ready, timeout_s)

    def stop(self) -> None:
        self.process.stop()
