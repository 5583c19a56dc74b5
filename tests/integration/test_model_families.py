"""The stack on each tiny model family: ResNet (CLIP BPE), SigLIP (sentencepiece, sigmoid scoring) and
XLM-RoBERTa (multilingual sentencepiece).

One family at a time, a worker and an API process run on that family's bundled model beside the session
stack: they share its Weaviate (collections are per model, so nothing mixes) and its Redis server, on a
database of their own (so their Celery queue, job records and text cache are theirs). That costs a worker
and an API start per family (a few seconds), not three more Weaviate and Redis servers. Real processes, no
mocks; results are checked against the same model run in this process (tests/unit/clip_helpers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from clipsearch.processes import free_port
from clipsearch.stack import LocalStack
from indexer.classify.scoring import probabilities
from indexer.model.files import tiny_model_dir
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job
from tests.unit.clip_helpers import FAMILIES, family_encoder

pytestmark = pytest.mark.integration

REDIS_DB = {"rn": 1, "siglip": 2, "xlmr": 3}
N_IMAGES = 6


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(
    request: pytest.FixtureRequest, stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Api]]:
    name: str = request.param
    model_id = FAMILIES[name]
    model_dir = tiny_model_dir(model_id)
    base_redis = stack.redis_url
    assert base_redis.endswith("/0"), "the session stack's Redis URL names database 0"
    settings = stack.settings.model_copy(
        update={
            "redis_url": f"{base_redis[:-2]}/{REDIS_DB[name]}",
            "weaviate_url": stack.weaviate_url,
            "weaviate_grpc_port": stack.weaviate_grpc_port,
            "model_id": model_id,
            "model_dir": model_dir,
            "data_dir": tmp_path_factory.mktemp(f"family-{name}"),
            "api_port": free_port(),
        }
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("MODEL_DIR", str(model_dir))  # the children inherit the environment
    local = LocalStack(settings)
    try:
        local.start()
        local.wait_healthy(timeout_s=120)
        yield name, Api(local.api_url)
    finally:
        local.stop()
        mp.undo()


@pytest.fixture(scope="module")
def indexed(family: tuple[str, Api]) -> dict[str, Any]:
    name, api = family
    collection = new_collection(api, f"fam-{name}")
    images = {f"f{i}.jpg": make_image(1500 + i) for i in range(N_IMAGES)}
    report = wait_job(api, upload(api, collection, list(images.items()))["job_id"])
    assert report["state"] == "completed" and report["done"] == N_IMAGES, report
    return {"collection": collection, "images": images}


def _search(api: Api, collection: str, query: str) -> list[dict[str, Any]]:
    response = api.post("/search/text", json={"collection": collection, "query": query, "limit": N_IMAGES})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _expected_order(name: str, images: dict[str, bytes], query: str) -> list[str]:
    """Filenames by descending cosine, computed in this process with the same model."""
    enc = family_encoder(name)
    outcomes = enc.embed_image_bytes(list(images.values()), max_pixels=64_000_000)
    vectors = np.stack([o.vector for o in outcomes if o.vector is not None])
    query_vec = enc.encode_texts([query])[0][0]
    order = np.argsort(-(vectors @ query_vec), kind="stable")
    return [list(images)[i] for i in order]


def test_the_stack_runs_the_family_model(family: tuple[str, Api]) -> None:
    name, api = family
    embedded = api.post("/embed/text", json={"texts": ["a photo of a cat"]})
    assert embedded.status_code == 200, embedded.text
    body = embedded.json()
    assert body["model_id"] == FAMILIES[name]
    local = family_encoder(name).encode_texts(["a photo of a cat"])[0][0]
    assert float(np.asarray(body["embeddings"][0]["vector"], np.float32) @ local) >= 0.99999


def test_image_search_finds_the_same_image_first(family: tuple[str, Api], indexed: dict[str, Any]) -> None:
    _, api = family
    filename, data = list(indexed["images"].items())[2]
    response = api.post(
        "/search/image",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"collection": indexed["collection"], "limit": "3"},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["filename"] == filename
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_text_search_ranks_as_the_model_does(family: tuple[str, Api], indexed: dict[str, Any]) -> None:
    """Latin script on every family; on the multilingual model also Cyrillic and Japanese queries, which
    must reach the model as the multilingual tokenizer's ids (not unknown tokens) and rank as it does."""
    name, api = family
    queries = ["a photo of a cat"]
    if name == "xlmr":
        queries += ["фотография кошки на диване", "ソファで寝ている猫の写真"]
        ids = family_encoder(name).tokenize(queries[1:]).ids
        assert ((ids != 3) & (ids != 1)).sum(axis=1).min() > 4  # real pieces, neither <unk> (3) nor <pad>
    orders = []
    for query in queries:
        results = _search(api, indexed["collection"], query)
        assert len(results) == N_IMAGES
        got = [r["filename"] for r in results]
        assert got == _expected_order(name, indexed["images"], query), query
        orders.append(got)
    if name == "xlmr":
        vectors = family_encoder(name).encode_texts(queries)[0]
        assert float(vectors[0] @ vectors[1]) < 0.9999  # different queries, different vectors


def test_compare_uses_the_family_scoring(family: tuple[str, Api]) -> None:
    name, api = family
    prompts = ["a photo of a cat", "a photo of a dog", "a red car"]
    body_in = {"subject": {"text": "a cat on a sofa"}, "prompts": [{"text": t} for t in prompts]}
    response = api.post("/compare", json=body_in)
    assert response.status_code == 200, response.text
    body = response.json()
    sims = np.asarray([r["similarity"] for r in body["results"]])
    probs = np.asarray([r["probability"] for r in body["results"]])
    if name == "siglip":
        assert body["scoring"] == "sigmoid" and body["logit_bias"] == pytest.approx(-10.0)
        expected = 1.0 / (1.0 + np.exp(-(body["logit_scale"] * sims + body["logit_bias"])))
        assert probs == pytest.approx(expected, abs=1e-6)
    else:
        assert body["scoring"] == "softmax" and body["logit_bias"] is None
        assert probs.sum() == pytest.approx(1.0, abs=1e-6)
        expected = probabilities(sims[None, :], body["logit_scale"])[0]
        assert probs == pytest.approx(expected, abs=1e-6)
