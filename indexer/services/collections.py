"""The collections use cases: create one bound to a model, list, get with its image count, delete with
its images (and their blobs, unless another image shares them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import weaviate

from indexer.errors import require_model
from indexer.storage.gc import BlobCollector
from indexer.store.collections import (
    CollectionInfo,
    create_collection,
    delete_collection,
    get_collection,
    list_collections,
)
from indexer.store.images import ImageStore

__all__ = ["CollectionInfo", "CollectionsService"]


@dataclass(frozen=True)
class CollectionsService:
    weaviate: Callable[[], weaviate.WeaviateClient]
    model_id: Callable[[], str]  # the model this service runs
    collector: Callable[[], BlobCollector]

    def create(self, name: str, model_id: str | None, description: str) -> CollectionInfo:
        """A new collection of ``model_id`` (default: this service's model), which must be the model this
        service runs (else ModelMismatch, 409)."""
        model_id = model_id or self.model_id()
        require_model(
            f"a new collection {name!r}",
            model_id,
            self.model_id(),
            hint=f"start a service with MODEL_ID={model_id}",
        )
        return create_collection(self.weaviate(), name, model_id, description)

    def list(self) -> list[CollectionInfo]:
        return list_collections(self.weaviate())

    def get(self, name: str) -> CollectionInfo:
        """The collection with its image count."""
        client = self.weaviate()
        info = get_collection(client, name, with_count=False)
        info.count = ImageStore(client, info.model_id).count(name)
        return info

    def delete(self, name: str) -> None:
        delete_collection(self.weaviate(), name, self.collector())
