"""How many Weaviate requests one classify by `image_id` makes, counted on the wire.

As in test_search_requests.py, a second API (this process's Flask app) reaches the stack's Weaviate
through counting proxies on loopback (gRPC and REST), while the stack's own API creates and changes the
class set. Issue 12 measured about 13 requests for a classify by id; before this test it still made 8
(6 gRPC, 2 REST: schema checks of the class registry and of the reference collection, the collection's
binding read three times, the record, the references, the vector). Now: the class set's record, the
collection's binding and the image's vector, three gRPC queries and no REST; the references are read
once per version of the class set (4 queries for the first classify in a process).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from indexer.settings import Settings
from tests.imagegen import make_image
from tests.integration.classify_helpers import indexed_collection, vectors_of
from tests.integration.conftest import Api
from tests.integration.weaviate_proxy import Counted, counted_app

pytestmark = pytest.mark.integration

MAX_REQUESTS = 3  # a warm classify by id: the class set, the collection's binding, the image's vector


@pytest.fixture(scope="module")
def proxied(settings: Settings) -> Iterator[Counted]:
    with counted_app(settings) as counted:
        yield counted


@pytest.fixture(scope="module")
def class_set(api: Api, settings: Settings) -> dict[str, Any]:
    """A collection and a class set of raw vectors, made by the other process (the stack's API)."""
    files = {f"q{i}.jpg": make_image(700 + i) for i in range(4)}
    collection, ids = indexed_collection(api, "clsreq", files)
    order = sorted(files)
    vectors = vectors_of(settings, [ids[f] for f in order])
    name = f"req-{uuid.uuid4().hex[:6]}"
    classes = {"A": {"vectors": [vectors[0].tolist()]}, "B": {"vectors": [vectors[1].tolist()]}}
    response = api.post("/class-sets", json={"name": name, "collection": collection, "classes": classes})
    assert response.status_code == 201, response.text
    return {"name": name, "collection": collection, "ids": [ids[f] for f in order], "vectors": vectors}


def test_a_classify_by_id_makes_at_most_three_weaviate_requests(
    proxied: Counted, class_set: dict[str, Any], api: Api
) -> None:
    body = {"class_set": class_set["name"], "image_id": class_set["ids"][0]}
    proxied.requests()
    first = proxied.post("/classify", body)
    assert first["predictions"][0]["label"] == "A"
    cold = proxied.requests()
    again = proxied.post("/classify", body)
    warm = proxied.requests()
    print(f"classify by id, Weaviate requests (gRPC, REST): cold {cold}, warm {warm}")
    # The first classify in this process also reads the references (one more query).
    assert cold[1] == 0 and cold[0] <= MAX_REQUESTS + 1, f"cold classify: {cold}"
    assert again["predictions"] == first["predictions"]
    assert warm[1] == 0, f"no REST request (no schema checks): {warm}"
    assert sum(warm) <= MAX_REQUESTS, f"a classify by id: {warm} (gRPC, REST)"

    # The other process changes the class set: this process sees the new version at once (the
    # references are cached per version, not per name).
    changed = api.post(
        f"/class-sets/{class_set['name']}/embeddings", json={"C": [class_set["vectors"][2].tolist()]}
    )
    assert changed.status_code == 200, changed.text
    third = proxied.post("/classify", {**body, "image_id": class_set["ids"][2]})
    assert third["predictions"][0]["label"] == "C"
    assert third["version"] == changed.json()["version"]

    # Deleted and created again under the same name (version 1 again): never the old references.
    assert api.delete(f"/class-sets/{class_set['name']}").status_code == 204
    again_created = api.post(
        "/class-sets",
        json={
            "name": class_set["name"],
            "collection": class_set["collection"],
            "classes": {"D": {"vectors": [class_set["vectors"][0].tolist()]}},
        },
    )
    assert again_created.status_code == 201, again_created.text
    fresh = proxied.post("/classify", body)
    assert [r["name"] for r in fresh["predictions"][0]["ranked"]] == ["D"]


def test_an_unknown_class_set_or_image_is_a_404(proxied: Counted, class_set: dict[str, Any]) -> None:
    zero = "00000000-0000-0000-0000-000000000000"
    for body in (
        {"class_set": "no-such-set", "image_id": class_set["ids"][0]},
        {"class_set": class_set["name"], "image_id": zero},
        {"class_set": class_set["name"], "image_id": zero, "boxes": [[0, 0, 1, 1]]},
    ):
        response = proxied.client.post("/classify", json=body)
        assert response.status_code == 404, (body, response.get_data(as_text=True))
