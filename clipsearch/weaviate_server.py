"""The managed local Weaviate: a single node bound to loopback, telemetry off, no outside modules (only
backup-filesystem, which writes backups where clipsearch asks: indexer/backup/)."""

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


def weaviate_env(
    data_path: Path,
    ports: WeaviatePorts,
    *,
    hostname: str = "clipsearch-node",
    cluster_join: str | None = None,
    raft_join: str | None = None,
    bootstrap_expect: int = 1,
    backup_s3: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment that a loopback-only node needs (after weaviate-client's embedded.py); a single
    node by default, one node of a loopback cluster with the join arguments (`WeaviateCluster`)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLUSTER_", "RAFT_"))}
    env.update(
        {
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
            "PERSISTENCE_DATA_PATH": str(data_path),
            "DEFAULT_VECTORIZER_MODULE": "none",
            "ENABLE_MODULES": "backup-filesystem",
            # Each backup names its own directory (a dynamic location, indexer/backup/target.py); the
            # module still needs a default, absolute one (Weaviate's own example puts it in the data path).
            "BACKUP_FILESYSTEM_PATH": str(data_path.resolve() / "backups"),
            "DISABLE_TELEMETRY": "true",
            "GO_PROFILING_DISABLE": "true",
            "PROMETHEUS_MONITORING_ENABLED": "false",
            "QUERY_DEFAULTS_LIMIT": "20",
            "LIMIT_RESOURCES": "true",
            "LOG_LEVEL": "warning",
            "CLUSTER_HOSTNAME": hostname,
            "CLUSTER_IN_LOCALHOST": "true",
            "CLUSTER_BIND_ADDR": LOOPBACK,
            "CLUSTER_GOSSIP_BIND_PORT": str(ports.gossip),
            "CLUSTER_DATA_BIND_PORT": str(ports.data),
            "GRPC_PORT": str(ports.grpc),
            "RAFT_PORT": str(ports.raft),
            "RAFT_INTERNAL_RPC_PORT": str(ports.raft_rpc),
            "RAFT_BOOTSTRAP_EXPECT": str(bootstrap_expect),
        }
    )
    if backup_s3:  # the managed object store's bucket (ObjectStoreServer.weaviate_backup_env)
        env.update(backup_s3)
        env["ENABLE_MODULES"] = "backup-filesystem,backup-s3"
    if cluster_join:  # the gossip address of a node already up (memberlist join)
        env["CLUSTER_JOIN"] = cluster_join
    if raft_join:  # "name:raftport,..." of every voter (with CLUSTER_IN_LOCALHOST each has its own port)
        env["RAFT_JOIN"] = raft_join
    return env


class WeaviateServer:
    """Start and stop the Weaviate binary that scripts/build_weaviate.sh built and cached."""

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        log_dir: Path,
        ports: WeaviatePorts | None = None,
        name: str = "weaviate",
        env: dict[str, str] | None = None,
        backup_s3: dict[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.ports = ports or WeaviatePorts()
        self.name = name
        self.process = ManagedProcess(
            name,
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
            log_dir / f"{name}.log",
            env=env or weaviate_env(data_dir, self.ports, backup_s3=backup_s3),
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.http}"

    def ready(self) -> bool:
        return requests.get(self.url + READY_PATH, timeout=1).status_code == 200

    @property
    def grpc_url(self) -> str:
        """This node in WEAVIATE_URL form, with its own gRPC port (a loopback cluster has one each)."""
        return f"{self.url}?grpc_port={self.ports.grpc}"

    def launch(self, check_ports: bool = True) -> None:
        """Start the process without waiting (a cluster's nodes must all be up to elect a leader).
        ``check_ports=False`` restarts a node on its own ports, which may still linger in TIME_WAIT
        (Weaviate binds with SO_REUSEADDR, so they are usable; the check would refuse them)."""
        if not self.binary.is_file():
            raise StartupError(
                f"Weaviate binary not found at {self.binary}; run scripts/setup.sh to build it",
                {"path": str(self.binary)},
            )
        ensure_writable_dir(self.data_dir, "Weaviate")
        for purpose, port in self.ports.named().items() if check_ports else ():
            ensure_port_free(port, f"{purpose} ({self.name})")
        self.process.start()

    def wait(self, timeout_s: float = 90.0) -> None:
        self.process.wait_ready(self.ready, timeout_s)

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
        self.process.wait_ready(self.ready, timeout_s)

    def stop(self) -> None:
        self.process.stop()


class WeaviateCluster:
    """N Weaviate nodes on loopback forming one cluster: each has its own HTTP, gRPC, gossip, data and
    Raft ports; each joins the gossip ports of all the others (Weaviate retries the join and rejoins
    periodically, so any node, the first included, can be killed and restarted) and every node lists all
    voters in RAFT_JOIN."""

    def __init__(
        self, binary: Path, data_dir: Path, log_dir: Path, nodes: int, backup_s3: dict[str, str] | None = None
    ) -> None:
        if nodes < 1:
            raise StartupError("a Weaviate cluster needs at least one node")
        ports = [WeaviatePorts() for _ in range(nodes)]
        names = [f"clipsearch-node{i}" for i in range(nodes)]
        raft_join = ",".join(f"{name}:{p.raft}" for name, p in zip(names, ports, strict=True))
        self.nodes: list[WeaviateServer] = []
        for i, (name, p) in enumerate(zip(names, ports, strict=True)):
            node_dir = data_dir / f"node{i}"
            env = weaviate_env(
                node_dir,
                p,
                hostname=name,
                cluster_join=",".join(f"{LOOPBACK}:{o.gossip}" for o in ports if o is not p) or None,
                raft_join=raft_join,
                bootstrap_expect=nodes,
                backup_s3=backup_s3,
            )
            self.nodes.append(WeaviateServer(binary, node_dir, log_dir, p, name=f"weaviate-{i}", env=env))

    @property
    def url(self) -> str:
        """WEAVIATE_URL for the whole cluster: every node, comma-separated, each with its gRPC port."""
        return ",".join(node.grpc_url for node in self.nodes)

    @property
    def ports(self) -> WeaviatePorts:
        return self.nodes[0].ports

    @property
    def process(self) -> ManagedProcess:
        return self.nodes[0].process

    def start(self, timeout_s: float = 120.0, attempts: int = 3) -> None:
        """Launch every node and wait for all. A cluster whose Raft bootstrap did not happen (the nodes
        found each other too late and each gave up the election: "no known peers", seen on a loaded
        2-core machine) never becomes ready, so past half the timeout the whole cluster is stopped and
        launched again on the same ports and data (nothing is written before it first forms)."""
        for attempt in range(1, attempts + 1):
            for node in self.nodes:
                node.launch(check_ports=attempt == 1)
            try:
                for node in self.nodes:
                    node.wait(timeout_s / 2 if attempt < attempts else timeout_s)
                return
            except StartupError:
                if attempt == attempts:
                    raise
                self.stop()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
