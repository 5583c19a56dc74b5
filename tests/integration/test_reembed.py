"""Moving a collection to another model: a re-embed job from the stored originals, then the switch."""

from __future__ import annotations

import numpy as np
import pytest
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter

from indexer.settings import Settings
from indexer.store.collections import _registry_uuid
from indexer.store.connection import connect
from indexer.store.images import ImageStore, to_properties
from indexer.store.schema import REGISTRY
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

pytestmark = pytest.mark.integration
OLD_MODEL = "old-test-model"


def _move_to_old_model(settings: Settings, name: str, model_id: str) -> None:
    """Make the collection look as if it had been indexed with another model (8-d vectors)."""
    client = connect(settings)
    try:
        current = ImageStore(client, model_id)
        records = current.records(
            [str(o.uuid) for o in current.collection.iterator() if o.properties["collection"] == name]
        )
        old = ImageStore(client, OLD_MODEL, ensure=True)
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((len(records), 8)).astype(np.float32)
        old.collection.data.insert_many(
            [
                DataObject(properties=to_properties(r), uuid=r.id, vector=v.tolist())
                for r, v in zip(records.values(), vectors, strict=True)
            ]
        )
        current.delete_where(Filter.by_property("collection").equal(name))
        client.collections.use(REGISTRY).data.update(
            uuid=_registry_uuid(name), properties={"model_id": OLD_MODEL}
        )
    finally:
        client.close()


def test_reembed_moves_a_collection_to_the_service_model(api: Api, settings: Settings) -> None:
    name = new_collection(api, "move")
    images = {f"m{i}.jpg": make_image(3000 + i) for i in range(5)}
    wait_job(api, upload(api, name, list(images.items()), tags="keep", metadata='{"k": 1}')["job_id"])
    model = api.get(f"/collections/{name}").json()["model_id"]
    _move_to_old_model(settings, name, model)

    stale = api.post("/search/text", json={"collection": name, "query": "x"})
    assert stale.status_code == 409 and "reembed" in stale.json()["error"]["message"]
    assert (
        api.post(
            f"/collections/{name}/images", files=[("files", ("a.jpg", make_image(1), "image/jpeg"))]
        ).status_code
        == 409
    )

    accepted = api.post(f"/collections/{name}/reembed")
    assert accepted.status_code == 202, accepted.text
    closed = api.post(f"/jobs/{accepted.json()['job_id']}/close")  # not the client's to end
    assert closed.status_code == 409 and "ends by itself" in closed.text, closed.text
    report = wait_job(api, accepted.json()["job_id"])
    assert (report["state"], report["kind"], report["done"], report["failed"]) == (
        "completed",
        "reembed",
        5,
        0,
    )

    info = api.get(f"/collections/{name}").json()
    assert (info["model_id"], info["count"]) == (model, 5)
    filename, data = next(iter(images.items()))
    hit = api.post(
        "/search/image", files={"image": ("q.jpg", data, "image/jpeg")}, data={"collection": name}
    ).json()
    assert hit["results"][0]["filename"] == filename and hit["results"][0]["score"] == pytest.approx(
        1.0, abs=1e-4
    )
    assert hit["results"][0]["tags"] == ["keep"] and hit["results"][0]["metadata"] == {"k": 1}
    client = connect(settings)
    try:
        assert ImageStore(client, OLD_MODEL).count(name) == 0
    finally:
        client.close()
    again = api.post(f"/collections/{name}/reembed")
    assert again.status_code == 409 and "already uses model" in again.json()["error"]["message"]
