"""What one worker process holds for its life: clients and the encoder, built on first use after fork."""

from __future__ import annotations

import threading

import redis

from indexer.jobs.store import JobStore
from indexer.model.loader import load_encoder
from indexer.services.chunks import IngestRuntime
from indexer.settings import Settings
from indexer.storage.blobs import BlobStore
from indexer.store.connection import FailoverClient
from workers.celery_factory import DEFAULT_REDIS_URL


class WorkerRuntime:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtime: IngestRuntime | None = None
        self._weaviate: FailoverClient | None = None

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
                    weaviate=self._client(settings).get(),
                    jobs=JobStore(client, settings.job_ttl_s),
                    blobs=BlobStore.from_settings(settings),
                    encoder=load_encoder(settings, lanes=settings.inference_lanes),
                )
                self._runtime = rt
            else:  # reconnected when its node stopped answering (a cluster fails over to another)
                rt.weaviate = self._client(rt.settings).get()
            return rt

    def _client(self, settings: Settings) -> FailoverClient:
        if self._weaviate is None:  # every get() checks the node (check_s=0), as each chunk starts
            self._weaviate = FailoverClient(settings, check_s=0.0)
        return self._weaviate
