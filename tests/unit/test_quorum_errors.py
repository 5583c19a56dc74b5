"""A lost quorum is a typed outage: told apart from other Weaviate errors, and answered as 503 with
Retry-After by the one error handler."""

from __future__ import annotations

import weaviate.exceptions as wvx
from flask import Flask

from indexer.errors import QuorumUnavailable, dependency_failure, is_quorum_message
from search_api.errors import register_error_handlers

NO_QUORUM = (
    "msg: search: cannot achieve consistency level QUORUM: read error: "
    "cannot reach enough replicas: status code: 500"
)


def test_quorum_messages_are_told_apart() -> None:
    assert is_quorum_message(NO_QUORUM)
    assert is_quorum_message("put object: broadcast: cannot reach enough replicas")
    assert is_quorum_message("Leader not found")
    assert not is_quorum_message("no such class Image_x")
    assert not is_quorum_message("invalid filter: unknown property")


def test_a_query_without_quorum_is_a_quorum_outage_and_other_errors_are_not() -> None:
    down = dependency_failure(wvx.WeaviateQueryError(NO_QUORUM, "GRPC"), retry_after_s=7)
    assert isinstance(down, QuorumUnavailable)
    assert down.dependency == "weaviate" and down.retry_after_s == 7
    assert down.message.startswith("vector store has no quorum: ")
    assert dependency_failure(wvx.WeaviateQueryError("unknown property 'x'", "GRPC")) is None


def test_a_quorum_outage_is_a_503_with_retry_after() -> None:
    app = Flask(__name__)
    register_error_handlers(app)

    @app.get("/typed")
    def typed() -> str:
        raise QuorumUnavailable("vector store has no quorum: x", dependency="weaviate", retry_after_s=9)

    @app.get("/raw")
    def raw() -> str:
        raise wvx.WeaviateQueryError(NO_QUORUM, "GRPC")

    client = app.test_client()
    for path in ("/typed", "/raw"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.headers["Retry-After"].isdigit()
        assert response.get_json()["error"]["code"] == "no_quorum"


def test_an_index_not_loaded_yet_after_a_restart_is_an_outage() -> None:
    message = "explorer: list class: search: tried to browse non-existing index for ClipsearchCollection"
    down = dependency_failure(wvx.WeaviateQueryError(message, "GRPC search"))
    assert down is not None and not isinstance(down, QuorumUnavailable) and down.dependency == "weaviate"


def test_a_cluster_without_a_majority_of_answering_nodes_has_no_quorum() -> None:
    import socket

    from clipsearch.processes import free_port
    from indexer.settings import Settings
    from indexer.store.connection import nodes_without_quorum

    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(4)]
    try:
        up = [s.getsockname()[1] for s in listeners]  # two nodes' HTTP and gRPC ports
        alive = [f"http://127.0.0.1:{up[0]}?grpc_port={up[1]}", f"http://127.0.0.1:{up[2]}?grpc_port={up[3]}"]
        dead = f"http://127.0.0.1:{free_port()}?grpc_port={free_port()}"

        def lost(*nodes: str) -> str | None:
            return nodes_without_quorum(Settings(weaviate_url=",".join(nodes)))

        assert lost(alive[0]) is None  # a single node: no quorum to lose
        assert lost(*alive, dead) is None  # 2 of 3 answer
        assert lost(alive[0], dead, dead) == "1 of 3 nodes answer"
    finally:
        for s in listeners:
            s.close()


def test_a_query_on_a_channel_that_failover_closed_is_an_outage() -> None:
    # seen in CI: a search in flight while the API failed over to another node of a cluster (a 500 before)
    down = dependency_failure(
        wvx.WeaviateQueryError(
            "Query call with protocol GRPC search failed with message Channel closed!.", "GRPC search"
        )
    )
    assert down is not None and down.dependency == "weaviate"
