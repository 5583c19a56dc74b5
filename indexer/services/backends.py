"""The clients a process holds for its life, built once from the settings: Weaviate, Redis, the blob
store and the encoder. The API (search_api.services) and the workers build one `Backends` per process;
each application service is given what it uses: callables of the clients (the newer services), or the
Backends seen through a narrow port (`Collections`, `Encoding`, `Classifying`) that names what it may
touch."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import redis
import weaviate

from indexer.errors import require_model
from indexer.jobs.store import JobStore
from indexer.settings import Settings
from indexer.storage.blobs import BlobStore
from indexer.storage.gc import BlobCollector
from indexer.store.collections import CollectionInfo, get_collection
from indexer.store.connection import FailoverClient
from indexer.store.images import ImageStore
from indexer.store.schema import (
    ensure_class_registry,
    ensure_image_collection,
    ensure_reference_collection,
    ensure_registry,
)

if TYPE_CHECKING:
    from indexer.model.encoder import ClipEncoder

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Collections(Protocol):
    """What a use case over user collections and their images is given: the settings, the Weaviate
    client, the model this process runs, and a collection's binding and images (no Redis, no blobs)."""

    settings: Settings

    @property
    def weaviate(self) -> weaviate.WeaviateClient: ...

    @property
    def model_id(self) -> str: ...

    def collection(self, name: str) -> CollectionInfo: ...

    def encodable_collection(self, name: str) -> CollectionInfo: ...

    def image_store(self, info: CollectionInfo) -> ImageStore: ...


class Encoding(Protocol):
    """What a use case that encodes queries is given: the settings, the Weaviate client and the encoder."""

    settings: Settings

    @property
    def weaviate(self) -> weaviate.WeaviateClient: ...

    @property
    def model_id(self) -> str: ...

    @property
    def encoder(self) -> ClipEncoder: ...


class Classifying(Collections, Encoding, Protocol):
    """What classification is given: collections, the encoder and the blob store (example images)."""

    @property
    def blobs(self) -> BlobStore: ...


class Backends:
    def __init__(self, settings: Settings, *, encoder: ClipEncoder | None = None) -> None:
        """``encoder``: one already built (a benchmark's stand-in); else loaded from the settings on
        first use."""
        self.settings = settings
        self._lock = threading.Lock()
        self._weaviate = FailoverClient(settings)  # one node's client; moves on when that node is down
        self._redis: redis.Redis | None = None
        self._encoder: ClipEncoder | None = encoder

    @property
    def weaviate(self) -> weaviate.WeaviateClient:
        """The Weaviate client, connected on first use and re-connected after an outage."""
        with self._lock:
            return self._weaviate.get()

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self.settings.redis_url or DEFAULT_REDIS_URL, socket_timeout=10, socket_connect_timeout=2
            )
        return self._redis

    @property
    def encoder(self) -> ClipEncoder:
        """The CLIP encoder; its ONNX sessions load on first use."""
        with self._lock:
            if self._encoder is None:
                from indexer.model.loader import load_encoder  # onnxruntime loads on first use only

                self._encoder = load_encoder(self.settings)
            return self._encoder

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    def encoder_status(self) -> dict[str, Any]:
        return self.encoder.status()

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.redis, self.settings.job_ttl_s)

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore.from_settings(self.settings)

    def ensure_schema(self) -> None:
        """Create the Weaviate collections this process uses (registries, this model's images and class
        references), once at start-up instead of on every request. Idempotent."""
        client = self.weaviate
        ensure_registry(client)
        ensure_class_registry(client)
        ensure_image_collection(client, self.model_id)
        ensure_reference_collection(client, self.model_id)

    def blob_collector(self) -> BlobCollector:
        """Removes the blobs of deleted images that nothing refers to any more (indexer/storage/gc.py)."""
        return BlobCollector(self.weaviate, self.redis, self.blobs)

    def collection(self, name: str) -> CollectionInfo:
        return get_collection(self.weaviate, name, with_count=False)

    def encodable_collection(self, name: str) -> CollectionInfo:
        """A collection whose model this service runs: new images and queries can be encoded for it
        (else ModelMismatch, 409)."""
        info = self.collection(name)
        require_model(
            f"collection {name!r}",
            info.model_id,
            self.model_id,
            hint=f"re-embed it with POST /collections/{name}/reembed",
        )
        return info

    def image_store(self, info: CollectionInfo) -> ImageStore:
        return ImageStore(self.weaviate, info.model_id)

    def close(self) -> None:
        self._weaviate.close()
