"""A class set follows its collection to another model: references are re-encoded on first use.

The second model is the tiny model followed by a fixed random rotation (so its vectors are known
exactly); the move itself (images re-embedded into `Images_<new model>`, the registry pointing at it)
is done here straight in Weaviate, as a re-embed job would leave it. Real Weaviate, no mocks."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from weaviate.classes.query import Filter

from indexer.classify.manage import ensure_model
from indexer.classify.scorer import load_scorer
from indexer.classify.store import ClassStore, Kind, RefKind
from indexer.media.decode import DecodedImage
from indexer.model.encoder import ClipEncoder
from indexer.model.files import tiny_model_dir
from indexer.model.loader import load_encoder
from indexer.settings import Settings
from indexer.storage.blobs import BlobStore
from indexer.store.collections import _registry_uuid
from indexer.store.images import ImageStore
from indexer.store.schema import REGISTRY, image_collection_name, reference_collection_name
from tests.imagegen import make_image
from tests.integration.classify_helpers import MODEL_ID, indexed_collection, weaviate_client
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration


class RotatedEncoder:
    """The tiny model's vectors times a fixed orthogonal matrix: a different model with known outputs."""

    def __init__(self, base: ClipEncoder, rotation: NDArray[np.float32], model_id: str) -> None:
        self.base = base
        self.rotation = rotation
        self.model_id = model_id
        self.dim = base.dim
        self.logit_scale = 50.0
        self.logit_bias: float | None = None
        self.image_size = base.image_size
        self.min_decode_side = base.min_decode_side
        self.decoder = base.decoder

    def encode_texts(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], list[bool]]:
        vectors, truncated = self.base.encode_texts(texts)
        return (vectors @ self.rotation.T).astype(np.float32), truncated

    def encode_images(self, images: Sequence[NDArray[np.uint8] | DecodedImage]) -> NDArray[np.float32]:
        return (self.base.encode_images(images) @ self.rotation.T).astype(np.float32)


def test_references_are_reencoded_when_the_collection_moves(api: Api, settings: Settings) -> None:
    files = {"m0.jpg": make_image(1200), "m1.jpg": make_image(1201)}
    collection, ids = indexed_collection(api, "move", files)
    set_name = f"move-{uuid.uuid4().hex[:6]}"
    raw = np.random.default_rng(3).standard_normal(32).tolist()
    created = api.post(
        "/class-sets",
        json={
            "name": set_name,
            "collection": collection,
            "classes": {
                "cat": {"prompts": ["cat"]},
                "zero": {"image_ids": [ids["m0.jpg"]]},
                "raw": {"vectors": [raw]},
            },
        },
    )
    assert created.status_code == 201, created.text
    up = api.post(
        f"/class-sets/{set_name}/examples",
        data={"class": "one"},
        files=[("files", ("m1.jpg", files["m1.jpg"], "image/jpeg"))],
    )
    assert up.status_code == 200, up.text

    rotation = np.linalg.qr(np.random.default_rng(7).standard_normal((32, 32)))[0].astype(np.float32)
    new_model = f"tiny-rotated-{uuid.uuid4().hex[:6]}"
    base = load_encoder(Settings(model_dir=tiny_model_dir()))
    encoder = RotatedEncoder(base, rotation, new_model)
    with weaviate_client(settings) as client:
        old_images, new_images = ImageStore(client, MODEL_ID), ImageStore(client, new_model, ensure=True)
        old_vectors: dict[str, NDArray[np.float32]] = {}
        for image_id in ids.values():  # the re-embed: same ids, rotated vectors, registry moved
            record, vector = old_images.get(image_id, include_vector=True)
            old_vectors[image_id] = np.asarray(vector, np.float32)
            assert not new_images.insert([record], (old_vectors[image_id] @ rotation.T)[None, :])
        client.collections.use(REGISTRY).data.update(
            uuid=_registry_uuid(collection), properties={"model_id": new_model}
        )
        store = ClassStore(client)
        before = store.get(Kind.CLASS_SET, set_name)
        old_refs, old_ref_vectors = store.references(before)
        record = ensure_model(
            store, encoder, new_images, BlobStore(settings.blob_dir), before, settings.max_image_pixels
        )
        assert record.model_id == new_model and record.logit_scale == 50.0
        assert record.classes == ["cat", "zero", "one"] and record.dropped == {"raw": 1}
        refs, vectors = store.references(record)
        by_key: dict[Any, NDArray[np.float32]] = {
            (r.kind, r.class_name): v for r, v in zip(refs, vectors, strict=True)
        }
        old_by_key = {(r.kind, r.class_name): v for r, v in zip(old_refs, old_ref_vectors, strict=True)}
        assert set(by_key) == {(RefKind.PROMPT, "cat"), (RefKind.IMAGE, "zero"), (RefKind.IMAGE, "one")}
        for key, vector in by_key.items():  # every reference is the old one, rotated
            assert vector == pytest.approx(old_by_key[key] @ rotation.T, abs=1e-4)
        assert store.references(record.model_copy(update={"model_id": MODEL_ID}))[0] == []  # old ones gone
        scorer = load_scorer(store, record)
        [pred] = scorer.predict(old_vectors[ids["m1.jpg"]][None, :] @ rotation.T)
        assert pred.label == "one" and pred.score == pytest.approx(1.0, abs=1e-4)
    # over HTTP, the service (still on the tiny model) classifies stored ids from their stored vectors,
    # and refuses to encode an upload for a model it does not run, with the reason
    response = api.post("/classify", json={"class_set": set_name, "image_id": ids["m0.jpg"]})
    assert response.status_code == 200, response.text
    assert response.json()["model_id"] == new_model and response.json()["predictions"][0]["label"] == "zero"
    upload = api.post(
        "/classify", files={"image": ("q.jpg", files["m0.jpg"], "image/jpeg")}, data={"class_set": set_name}
    )
    assert upload.status_code == 409 and new_model in upload.json()["error"]["message"]
    assert upload.json()["error"]["code"] == "model_mismatch"
    # leave the session's stack as it was: no collection on a model that no service runs
    assert api.delete(f"/class-sets/{set_name}").status_code == 204
    assert api.delete(f"/collections/{collection}").status_code == 204
    with weaviate_client(settings) as client:
        ImageStore(client, MODEL_ID).delete_where(Filter.by_property("collection").equal(collection))
        client.collections.delete(image_collection_name(new_model))
        client.collections.delete(reference_collection_name(new_model))
