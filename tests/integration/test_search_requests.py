"""How many Weaviate requests one search makes, counted on the wire.

A second API (this process's Flask app, over the real Weaviate of the stack) reaches Weaviate through
counting proxies on loopback, one in front of the gRPC port and one in front of the REST port. The
stack's own API, a separate process, creates, fills, moves and deletes collections meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from indexer.pipeline.reembed import switch_model
from indexer.settings import Settings
from indexer.store.connection import connect
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job
from tests.integration.weaviate_proxy import Counted, counted_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def counted(settings: Settings) -> Iterator[Counted]:
    with counted_app(settings) as counted:
        yield counted


@pytest.fixture(scope="module")
def filled(api: Api) -> dict[str, Any]:
    """A collection created and filled by the other process (the stack's API and worker)."""
    name = new_collection(api, "count")
    images = [(f"n{i}.jpg", make_image(900 + i)) for i in range(6)]
    assert wait_job(api, upload(api, name, images, tags="t")["job_id"])["state"] == "completed"
    first = api.post("/search/text", json={"collection": name, "query": "x", "limit": 1}).json()
    return {"name": name, "image_id": first["results"][0]["id"]}


def test_one_search_is_one_weaviate_request(counted: Counted, filled: dict[str, Any]) -> None:
    name = filled["name"]
    text = {"collection": name, "query": "a red square", "limit": 5}
    # The first search in this process also reads the collection's binding from the registry.
    assert counted.post("/search/text", text)["count"] == 5
    counted.requests()

    again = counted.post("/search/text", text)
    assert again["cache_hit"] is True and again["count"] == 5
    assert counted.requests() == (1, 0), "a cached text search: one gRPC query, no REST"

    fresh = counted.post("/search/text", {**text, "query": "something never asked before"})
    assert fresh["cache_hit"] is False and fresh["count"] == 5
    assert counted.requests() == (1, 0), "a new text search: one gRPC query, no REST"

    filtered = counted.post("/search/text", {**text, "filters": {"tags": ["t"]}, "sort_by": "filename"})
    assert filtered["count"] == 5
    assert counted.requests() == (1, 0), "filters and sort_by: still one query"

    by_id = counted.post("/search/image", {"collection": name, "image_id": filled["image_id"], "limit": 3})
    assert by_id["results"][0]["id"] == filled["image_id"] and by_id["count"] == 3
    assert counted.requests() == (1, 0), "a search by a stored image id: one gRPC query"


def test_a_search_that_finds_nothing_checks_the_collection_again(
    counted: Counted, filled: dict[str, Any]
) -> None:
    body = {"collection": filled["name"], "query": "x", "filters": {"tags": ["no-such-tag"]}}
    counted.post("/search/text", body)
    counted.requests()
    assert counted.post("/search/text", body)["results"] == []
    assert counted.requests() == (2, 0), "the query, then one registry read"


def test_collections_created_deleted_and_moved_by_another_process(
    counted: Counted, api: Api, settings: Settings
) -> None:
    name = new_collection(api, "other")  # created by the stack's API, never seen by this process
    assert wait_job(api, upload(api, name, [("o.jpg", make_image(990))])["job_id"])["state"] == "completed"
    body = {"collection": name, "query": "x"}
    assert counted.post("/search/text", body)["count"] == 1

    model_id = api.get(f"/collections/{name}").json()["model_id"]
    client = connect(settings)
    try:
        switch_model(client, name, model_id, "another-model")  # as a re-embed to another model ends
    finally:
        client.close()
    moved = counted.client.post("/search/text", json=body)
    assert moved.status_code == 409, moved.get_data(as_text=True)
    assert moved.get_json()["error"]["code"] == "model_mismatch"
    zero = "00000000-0000-0000-0000-000000000000"
    by_id = counted.client.post("/search/image", json={"collection": name, "image_id": zero})
    assert by_id.status_code == 409 and by_id.get_json()["error"]["code"] == "model_mismatch"

    assert api.delete(f"/collections/{name}").status_code == 204
    gone = counted.client.post("/search/text", json=body)
    assert gone.status_code == 404 and "unknown collection" in gone.get_json()["error"]["message"]


def test_malformed_and_unknown_image_ids(api: Api, filled: dict[str, Any]) -> None:
    for path in ("/images/S/similar", "/images/not-a-uuid/similar?limit=2"):
        response = api.get(path)
        assert response.status_code == 400 and "malformed image id" in response.json()["error"]["message"]
    body = {"collection": filled["name"], "image_id": "not-a-uuid"}
    malformed = api.post("/search/image", json=body)
    assert malformed.status_code == 400 and "malformed image id" in malformed.json()["error"]["message"]
    unknown = api.post("/search/image", json={**body, "image_id": "00000000-0000-0000-0000-000000000000"})
    assert unknown.status_code == 404 and "unknown image" in unknown.json()["error"]["message"]
    assert api.get("/images/00000000-0000-0000-0000-000000000000/similar").status_code == 404
