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
