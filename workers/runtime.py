"""What one worker process holds for its life: clients and the encoder, built on first use after fork."""

from __future__ import annotations

import threading

import redis

from indexer.jobs.store import JobStore
from indexer.model.loader import load_encoder
from indexer.services.chunks import IngestRuntime
from indexer.settings import Settings
from indexer.storage.blobs import BlobStore
from indexer.store.connection import connect, node_answers
from workers.celery_factory import DEFAULT_REDIS_URL


class WorkerRuntime:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtime: IngestRuntime | None = None

    def settings(self) -> Settings:
        """The settings, without building the clients and the encoder."""
        rt = self._runtime
        return rt.settings if rt is not None else Settings()

    def get(self) -> IngestRuntime:
        with self._lock:
            rt = self._runtime
            if rt is None:
                settings = Settings()
                client = redis.Redis.from_url(settings.redis_url or DEFAULT_REDIS_URL)
                rt = IngestRuntime(
                    settings=settings,
                    weaviate=connect(settings),
                    jobs=JobStore(client, settings.job_ttl_s),
                    blobs=BlobStore.from_settings(settings),
                    encoder=load_encoder(settings, lanes=settings.inference_lanes),
                )
                self._runtime = rt
            elif not rt.weaviate.is_connected() or not node_answers(rt.settings, rt.weaviate):
                rt.weaviate = connect(rt.settings)  # the first node that answers (a cluster fails over)
            return rt
