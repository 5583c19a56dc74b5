"""Vectors of different models are never compared: two more paths answer 409 `model_mismatch`.

The other model is set up cheaply, straight in Weaviate: the collection's registry entry (it holds no
images) or the classifier's record names a model that this service does not run, as a re-embed or a
service on another model would leave them. Real stack, no mocks."""

from __future__ import annotations

import uuid

import pytest

from indexer.classify.store import ClassStore, Kind
from indexer.settings import Settings
from indexer.store.collections import _registry_uuid
from indexer.store.schema import REGISTRY
from tests.imagegen import make_image
from tests.integration.classify_helpers import MODEL_ID, weaviate_client
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection

pytestmark = pytest.mark.integration
OTHER_MODEL = "other-test-model"


def _collection_moves(settings: Settings, name: str) -> None:
    with weaviate_client(settings) as client:
        client.collections.use(REGISTRY).data.update(
            uuid=_registry_uuid(name), properties={"model_id": OTHER_MODEL}
        )


def _record_moves(settings: Settings, kind: Kind, name: str) -> None:
    """The record of a class set or classifier now names the other model (a new version)."""
    with weaviate_client(settings) as client:
        store = ClassStore(client)
        record = store.get(kind, name)
        record.model_id = OTHER_MODEL
        store.save(record)


def _mismatch(response_json: dict[str, object]) -> dict[str, object]:
    error = response_json["error"]
    assert isinstance(error, dict) and error["code"] == "model_mismatch", response_json
    details = error["details"]
    assert isinstance(details, dict)
    return details


def test_reencode_a_class_set_whose_collection_uses_another_model(api: Api, settings: Settings) -> None:
    collection = new_collection(api, "mm")
    name = f"mm-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "collection": collection, "classes": {"cat": {"prompts": ["a cat"]}}}
    assert api.post("/class-sets", json=body).status_code == 201
    ok = api.post(f"/class-sets/{name}/reencode")
    assert ok.status_code == 200, ok.text  # same model: nothing to do
    before = api.get(f"/class-sets/{name}").json()

    _collection_moves(settings, collection)
    moved = api.post(f"/class-sets/{name}/reencode")
    assert moved.status_code == 409, moved.text
    assert _mismatch(moved.json()) == {"model_id": OTHER_MODEL, "expected_model": MODEL_ID}

    # The class set had followed its collection to the other model (a service on that model re-encoded
    # it): this service cannot re-encode it for its own model either.
    _record_moves(settings, Kind.CLASS_SET, name)
    followed = api.post(f"/class-sets/{name}/reencode")
    assert followed.status_code == 409, followed.text
    assert _mismatch(followed.json())["model_id"] == OTHER_MODEL
    with weaviate_client(settings) as client:
        record = ClassStore(client).get(Kind.CLASS_SET, name)
    assert (record.model_id, record.version) == (OTHER_MODEL, before["version"] + 1)  # not re-encoded


def test_apply_a_classifier_of_another_model_to_uploads(api: Api, settings: Settings) -> None:
    name = f"mm-{uuid.uuid4().hex[:6]}"
    assert api.post("/classifiers", json={"name": name, "query": "a red square"}).status_code == 201
    files = [("files", ("a.jpg", make_image(5100), "image/jpeg"))]
    ok = api.post(f"/classifiers/{name}/apply", files=files, data={"threshold": "0.1"})
    assert ok.status_code == 200 and ok.json()["count"] == 1, ok.text

    _record_moves(settings, Kind.CLASSIFIER, name)
    files = [("files", ("a.jpg", make_image(5100), "image/jpeg"))]
    moved = api.post(f"/classifiers/{name}/apply", files=files, data={"threshold": "0.1"})
    assert moved.status_code == 409, moved.text
    assert _mismatch(moved.json()) == {"model_id": OTHER_MODEL, "expected_model": MODEL_ID}
    assert "a.jpg" not in moved.text  # refused before anything was encoded or scored
