"""What the routes call: lazily built clients over indexer, one set per app."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis
import weaviate
from celery import Celery
from flask import Flask, current_app

from indexer.blob_gc import BlobCollector
from indexer.blobs import BlobStore
from indexer.errors import Conflict
from indexer.jobs import JobStore
from indexer.search import TextEmbeddingCache
from indexer.settings import Settings
from indexer.store.connection import connect
from indexer.store.images import ImageStore
from indexer.user_collections import CollectionInfo, get_collection
from workers.celery_factory import DEFAULT_REDIS_URL, make_celery

if TYPE_CHECKING:
    from indexer.model.encoder import ClipEncoder

EXTENSION_KEY = "clipsearch"


@dataclass
class Services:
    settings: Settings
    celery: Celery
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _weaviate: weaviate.WeaviateClient | None = None
    _redis: redis.Redis | None = None
    _encoder: ClipEncoder | None = None
    text_cache: TextEmbeddingCache = field(default_factory=TextEmbeddingCache)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(settings=settings, celery=make_celery(settings))

    @property
    def weaviate(self) -> weaviate.WeaviateClient:
        """The Weaviate client, connected on first use and re-connected after an outage."""
        with self._lock:
            if self._weaviate is None or not self._weaviate.is_connected():
                self._weaviate = connect(self.settings)
            return self._weaviate

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
                from indexer.model.encoder import load_encoder  # onnxruntime loads on first use only

                self._encoder = load_encoder(self.settings)
            return self._encoder

    def encoder_status(self) -> dict[str, Any]:
        return self.encoder.status()

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.redis, self.settings.job_ttl_s)

    @cached_property
    def blobs(self) -> BlobStore:
        return BlobStore(self.settings.blob_dir)

    def blob_collector(self) -> BlobCollector:
        """Removes the blobs of deleted images that nothing refers to any more (indexer/blob_gc.py)."""
        return BlobCollector(self.weaviate, self.redis, self.blobs)

    def collection(self, name: str) -> CollectionInfo:
        return get_collection(self.weaviate, name, with_count=False)

    def encodable_collection(self, name: str) -> CollectionInfo:
        """A collection whose model this service runs: new images and queries can be encoded for it."""
        info = self.collection(name)
        if info.model_id != self.encoder.model_id:
            raise Conflict(
                f"collection {name!r} uses model {info.model_id}; this service runs {self.encoder.model_id} "
                f"(re-embed it with POST /collections/{name}/reembed)",
                {"collection_model": info.model_id, "service_model": self.encoder.model_id},
            )
        return info

    def image_store(self, info: CollectionInfo) -> ImageStore:
        return ImageStore(self.weaviate, info.model_id)

    def close(self) -> None:
        if self._weaviate is not None:
            self._weaviate.close()
            self._weaviate = None


def services() -> Services:
    """The Services of the app that handles the current request."""
    found: Services = current_app.extensions[EXTENSION_KEY]
    return found


def install(app: Flask, svc: Services) -> None:
    app.extensions[EXTENSION_KEY] = svc
