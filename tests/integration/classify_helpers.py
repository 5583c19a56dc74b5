"""Shared steps for the classification tests: index known images and read back their stored vectors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import weaviate

from indexer.settings import Settings
from indexer.store.connection import connect
from indexer.store.images import ImageStore
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job

MODEL_ID = "tiny-test-clip"


@contextmanager
def weaviate_client(settings: Settings) -> Iterator[weaviate.WeaviateClient]:
    client = connect(settings)
    try:
        yield client
    finally:
        client.close()


def indexed_collection(api: Api, prefix: str, files: dict[str, bytes]) -> tuple[str, dict[str, str]]:
    """A new collection holding `files`; returns (name, filename -> image id)."""
    name = new_collection(api, prefix)
    report = wait_job(api, upload(api, name, list(files.items()))["job_id"])
    assert report["state"] == "completed" and report["done"] == len(files), report
    hits = api.post("/search/text", json={"collection": name, "query": "x", "limit": 100}).json()["results"]
    return name, {hit["filename"]: hit["id"] for hit in hits}


def vectors_of(settings: Settings, ids: list[str]) -> np.ndarray:
    """The stored (unit) vectors of these images, read straight from Weaviate."""
    with weaviate_client(settings) as client:
        store = ImageStore(client, MODEL_ID)
        rows = []
        for image_id in ids:
            _, vector = store.get(image_id, include_vector=True)
            assert vector is not None
            rows.append(vector)
    return np.asarray(rows, dtype=np.float32)


def error_of(response: Any) -> str:
    body: dict[str, Any] = response.json()
    return str(body["error"]["message"])
