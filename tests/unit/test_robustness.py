"""Pure parts of the robustness work: the sort order, the caps, and which client errors are outages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import botocore.exceptions as boto
import httpx
import kombu.exceptions
import pytest
import redis
import weaviate.exceptions as wvx

from indexer.errors import DependencyUnavailable, InvalidInput, dependency_failure
from indexer.limits import check_ingest_options
from indexer.search import TextSearchRequest, _sort_key, check_limits
from indexer.settings import Settings
from indexer.store.images import ImageRecord, ScoredImage


def _hit(value: Any, i: int) -> ScoredImage:
    record = ImageRecord(
        id=f"{i}",
        collection="c",
        filename=f"f{i}",
        sha256="0" * 64,
        format="jpeg",
        width=1,
        height=1,
        ingested_at=datetime(2024, 1, 1, tzinfo=UTC),
        metadata={} if value is None else {"k": value},
    )
    return ScoredImage(image=record, score=1.0)


def test_sort_key_orders_any_mix_of_values() -> None:
    values = ["b", 3, None, 1.5, "a", False, {"x": 1}, [1], float("nan"), 10**30]
    hits = [_hit(v, i) for i, v in enumerate(values)]
    key = _sort_key("metadata.k")
    ordered = sorted(hits, key=key)  # would raise TypeError on str vs float without a total order
    got = [h.image.metadata.get("k", "<none>") for h in ordered]
    assert got[:5] == [False, 1.5, 3, 10**30, got[4]] and got[4] != got[4]  # NaN after the numbers
    assert got[5:7] == ["a", "b"] and got[-1] == "<none>"
    assert sorted(hits, key=key) == ordered  # deterministic


def test_dependency_failures_are_told_apart_from_bugs() -> None:
    for exc, dependency in [
        (redis.ConnectionError("refused"), "redis"),
        (redis.TimeoutError("slow"), "redis"),
        (redis.BusyLoadingError("loading"), "redis"),
        (kombu.exceptions.OperationalError("broker"), "redis"),
        (wvx.WeaviateConnectionError("down"), "weaviate"),
        (wvx.WeaviateQueryError("StatusCode.UNAVAILABLE: connection refused", "GRPC search"), "weaviate"),
        (
            wvx.WeaviateBatchError(
                "Query call with protocol GRPC batch failed with message "
                "Received RST_STREAM with error code 8"
            ),
            "weaviate",
        ),
        (wvx.WeaviateBatchError("Query call with protocol GRPC batch failed: Deadline Exceeded"), "weaviate"),
        (ValueError("Cannot invoke RPC on closed channel!"), "weaviate"),
        (boto.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "object store"),
        (boto.ConnectionClosedError(endpoint_url="http://127.0.0.1:9"), "object store"),
        (boto.ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), "object store"),
        (httpx.ConnectError("refused"), "weaviate"),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), "weaviate"),  # a node killed mid-answer
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "weaviate"),
        (httpx.ReadTimeout("slow"), "weaviate"),
    ]:
        down = dependency_failure(exc, retry_after_s=7)
        assert isinstance(down, DependencyUnavailable) and down.dependency == dependency, exc
        assert down.retry_after_s == 7 and down.details == {"dependency": dependency}
    for exc in [
        ValueError("bug"),
        redis.ResponseError("WRONGTYPE"),
        wvx.WeaviateQueryError("invalid filter", "GRPC search"),
        wvx.WeaviateBatchError("Query call with protocol GRPC batch failed: invalid vector length"),
        boto.ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject"),
        boto.NoCredentialsError(),
        httpx.HTTPStatusError("400", request=httpx.Request("GET", "http://x"), response=httpx.Response(400)),
    ]:
        assert dependency_failure(exc) is None, exc


def test_weighted_queries_and_sort_window_caps() -> None:
    many = [{"text": f"t{i}"} for i in range(5)]
    req = TextSearchRequest.model_validate({"collection": "c", "positive": many, "negative": many})
    check_limits(req, 100, max_queries=5)
    with pytest.raises(InvalidInput, match="5 `positive` queries, over the limit of 4"):
        check_limits(req, 100, max_queries=4)
    sorted_req = TextSearchRequest.model_validate(
        {"collection": "c", "query": "x", "sort_by": "width", "offset": 90, "limit": 20}
    )
    check_limits(sorted_req, 100, sort_window=110)
    with pytest.raises(InvalidInput, match="must not exceed 100"):
        check_limits(sorted_req, 100, sort_window=100)


def test_ingest_caps() -> None:
    settings = Settings(max_tags=2, max_metadata_keys=2, max_metadata_bytes=40, max_metadata_value_length=10)
    check_ingest_options(["a", "b"], {"k": "v" * 10}, settings)
    with pytest.raises(InvalidInput, match="MAX_TAGS"):
        check_ingest_options(["a", "b", "c"], {}, settings)
    with pytest.raises(InvalidInput, match="MAX_METADATA_KEYS"):
        check_ingest_options([], {"a": 1, "b": 2, "c": 3}, settings)
    with pytest.raises(InvalidInput, match="MAX_METADATA_VALUE_LENGTH"):
        check_ingest_options([], {"k": "v" * 11}, settings)
    with pytest.raises(InvalidInput, match="MAX_METADATA_BYTES"):
        check_ingest_options([], {"k" * 20: "v" * 10, "j" * 20: 1}, settings)
    with pytest.raises(InvalidInput, match="MAX_METADATA_KEY_LENGTH"):
        check_ingest_options([], {"": 1}, settings)


def test_cli_client_retries_transient_failures_only() -> None:
    """503 (with Retry-After) and 500 on a GET are retried; a 500 on a POST and a 4xx are not."""
    from flask import Flask, jsonify

    from clipsearch.client import ApiClient
    from indexer.errors import ClipsearchError
    from tests.integration.helpers import serve_in_thread

    app = Flask(__name__)
    hits = {"get": 0, "post": 0}

    @app.get("/flaky")
    def flaky() -> Any:
        hits["get"] += 1
        if hits["get"] == 1:
            return (
                jsonify({"error": {"code": "dependency_unavailable", "message": "down"}}),
                503,
                {"Retry-After": "0"},
            )
        if hits["get"] == 2:
            return jsonify({"error": {"code": "internal", "message": "oops"}}), 500
        return jsonify({"ok": True})

    @app.post("/flaky")
    def flaky_post() -> Any:
        hits["post"] += 1
        return jsonify({"error": {"code": "internal", "message": "oops"}}), 500

    @app.get("/missing")
    def missing() -> Any:
        return jsonify({"error": {"code": "not_found", "message": "nope"}}), 404

    with serve_in_thread(app) as base:
        client = ApiClient(base, retry_for_s=20)
        assert client.call("GET", "/flaky") == {"ok": True} and hits["get"] == 3
        with pytest.raises(ClipsearchError, match="oops"):
            client.call("POST", "/flaky")
        assert hits["post"] == 1
        with pytest.raises(ClipsearchError, match="nope"):
            client.call("GET", "/missing")
    quick = ApiClient("http://127.0.0.1:9", retry_for_s=1)  # nothing listens on the discard port
    with pytest.raises(ClipsearchError, match="gave up after 1 s of retries"):
        quick.call("GET", "/jobs")
