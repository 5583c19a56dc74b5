"""Connect to Weaviate from WEAVIATE_URL (the managed local server sets it for its children)."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import weaviate
from weaviate.classes.init import AdditionalConfig, Auth, Timeout

from indexer.errors import ServiceUnavailable
from indexer.settings import Settings
from indexer.store import options

DEFAULT_WEAVIATE_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class WeaviateNode:
    """One node of WEAVIATE_URL. A cluster is a comma-separated list; an entry may carry its own gRPC
    port as ``?grpc_port=N`` (a loopback cluster has one per node), else WEAVIATE_GRPC_PORT."""

    url: str
    host: str
    port: int
    grpc_port: int
    secure: bool

    def reachable(self, timeout_s: float = 0.5) -> bool:
        """Whether the node's HTTP and gRPC ports accept a connection right now (a cheap liveness probe)."""
        for port in (self.port, self.grpc_port):
            try:
                with socket.create_connection((self.host, port), timeout=timeout_s):
                    pass
            except OSError:
                return False
        return True


def weaviate_nodes(settings: Settings) -> list[WeaviateNode]:
    nodes = []
    for raw in (settings.weaviate_url or DEFAULT_WEAVIATE_URL).split(","):
        if not raw.strip():
            continue
        url = urlparse(raw.strip())
        secure = url.scheme == "https"
        grpc = parse_qs(url.query).get("grpc_port")
        nodes.append(
            WeaviateNode(
                url=url._replace(query="").geturl(),
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if secure else 80),
                grpc_port=int(grpc[0]) if grpc else settings.weaviate_grpc_port,
                secure=secure,
            )
        )
    return nodes


def connect_node(settings: Settings) -> tuple[weaviate.WeaviateClient, WeaviateNode]:
    """A client of the first node of WEAVIATE_URL that answers (failover: a node that is down is
    skipped), and that node. Raises ServiceUnavailable when none answers."""
    nodes = weaviate_nodes(settings)
    if len(nodes) == 1:
        return _connect(settings, nodes[0]), nodes[0]
    for node in nodes:
        if node.reachable():
            return _connect(settings, node, nodes), node
    raise ServiceUnavailable(f"cannot reach any Weaviate node of {settings.weaviate_url}")


def connect(settings: Settings) -> weaviate.WeaviateClient:
    """Open a v4 client (HTTP plus gRPC). Raises ServiceUnavailable with the address when it is down."""
    return connect_node(settings)[0]


def _grpc_target(node: WeaviateNode, nodes: list[WeaviateNode]) -> tuple[str, int]:
    """gRPC host and port for the client. On a cluster of IPv4 addresses, one gRPC target that lists
    every node, this one first (``ipv4:a:p,b:q,...``): gRPC's pick_first moves a channel whose node died
    to the next one, so queries and batch writes in flight fail over within the client's own retry."""
    others = [n for n in nodes if n != node]
    if not others or not all(_is_ipv4(n.host) for n in nodes):
        return node.host, node.grpc_port
    listed = [f"{n.host}:{n.grpc_port}" for n in [node, *others]]
    last_host, last_port = listed[-1].rsplit(":", 1)
    return "ipv4:" + ",".join([*listed[:-1], last_host]), int(last_port)


def _timeouts(nodes: list[WeaviateNode]) -> Timeout:
    """On a cluster a write can hang on a coordinator that still waits for a replica just lost: a shorter
    insert deadline turns that into an error the worker retries (on a live node) well inside the chunk's
    time limit. A single node keeps the long one (a big batch on a slow disk)."""
    if len(nodes) > 1:
        return Timeout(init=5, query=30, insert=12)
    return Timeout(init=5, query=60, insert=120)


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return host.count(".") == 3


def _connect(
    settings: Settings, node: WeaviateNode, nodes: list[WeaviateNode] | None = None
) -> weaviate.WeaviateClient:
    auth = Auth.api_key(settings.weaviate_api_key) if settings.weaviate_api_key else None
    grpc_host, grpc_port = _grpc_target(node, nodes or [node])
    try:
        client = weaviate.connect_to_custom(
            http_host=node.host,
            http_port=node.port,
            http_secure=node.secure,
            grpc_host=grpc_host,
            grpc_port=grpc_port,
            grpc_secure=node.secure,
            auth_credentials=auth,
            skip_init_checks=True,
            additional_config=AdditionalConfig(timeout=_timeouts(nodes or [node])),
        )
    except Exception as exc:  # the client raises several types for "not there"
        raise ServiceUnavailable(f"cannot reach Weaviate at {node.url}: {exc}") from exc
    return options.bind(client, settings)  # the store's consistency, replication and compression


def weaviate_status(client: weaviate.WeaviateClient) -> dict[str, object]:
    """Readiness and server version, for /health."""
    try:
        ready = bool(client.is_ready())
        version = client.get_meta().get("version") if ready else None
    except Exception as exc:  # /health reports any client failure as not ready rather than failing
        return {"ready": False, "error": str(exc)}
    status: dict[str, object] = {"ready": ready, "version": version}
    if ready:  # every node of the cluster as the connected node sees it (one entry on a single node)
        try:
            status["nodes"] = [
                {"name": node.name, "status": node.status} for node in client.cluster.nodes(output="minimal")
            ]
        except Exception as exc:  # as above: a failed node listing is reported, not raised
            status["nodes_error"] = str(exc)
    return status


class FailoverClient:
    """Holds one client of a Weaviate cluster and moves it to another node when its node stops
    answering (checked at most every ``check_s`` seconds, by a TCP connect, so requests stay cheap)."""

    def __init__(self, settings: Settings, check_s: float = 1.0) -> None:
        self.settings = settings
        self.check_s = check_s
        self.cluster = len(weaviate_nodes(settings)) > 1
        self._client: weaviate.WeaviateClient | None = None
        self._node: WeaviateNode | None = None
        self._checked = 0.0

    def get(self) -> weaviate.WeaviateClient:
        client, node = self._client, self._node
        if client is not None and client.is_connected():
            if not self.cluster or node is None:
                return client
            now = time.monotonic()
            if now - self._checked < self.check_s:
                return client
            self._checked = now
            if node.reachable():
                return client
            with contextlib.suppress(Exception):
                client.close()
        self._client, self._node = connect_node(self.settings)
        self._checked = time.monotonic()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = self._node = None


def nodes_without_quorum(settings: Settings) -> str | None:
    """With a cluster in WEAVIATE_URL: why a majority of its nodes does not answer ("1 of 3 nodes
    answer"), or None while it does (or with a single node). Connection probes only, so a lost quorum is
    told at once, before the surviving node's own failure detection marks its peers dead."""
    nodes = weaviate_nodes(settings)
    if len(nodes) < 2:
        return None
    up = sum(node.reachable() for node in nodes)
    return None if 2 * up > len(nodes) else f"{up} of {len(nodes)} nodes answer"
