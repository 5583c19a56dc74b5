"""What the routes call: the application services (indexer/services/), built once per app over one set
of clients, with the Weaviate schema ensured at start-up."""

from __future__ import annotations

import logging

from celery import Celery
from flask import Flask, current_app

from indexer.media.decoder import decoder_for
from indexer.search import TextEmbeddingCache
from indexer.services.backends import Backends
from indexer.services.backup import BackupService
from indexer.services.classify import ClassifyService
from indexer.services.collections import CollectionsService
from indexer.services.embeddings import EmbeddingsService
from indexer.services.export import ExportService
from indexer.services.facets import FacetsService
from indexer.services.images import ImagesService
from indexer.services.ingest import IngestService
from indexer.services.jobs import JobsService
from indexer.services.queue import JobQueue
from indexer.services.recovery import QuorumProbe
from indexer.services.reembed import ReembedService
from indexer.services.search import SearchService
from indexer.services.similarity import SimilarityService
from indexer.services.sync import SyncService
from indexer.settings import Settings
from workers.celery_factory import make_celery
from workers.queue import CeleryJobQueue

EXTENSION_KEY = "clipsearch"
log = logging.getLogger(__name__)


class Services(Backends):
    """The clients (Backends) and the use cases over them; enqueueing goes through one JobQueue port."""

    def __init__(self, settings: Settings, celery: Celery, queue: JobQueue | None = None) -> None:
        super().__init__(settings)
        self.celery = celery
        self.queue: JobQueue = queue or CeleryJobQueue(celery, settings)
        self.text_cache = TextEmbeddingCache()
        self.job_service = JobsService(self.jobs, self.queue, settings, quorum=QuorumProbe(settings))
        self.ingest = IngestService(self, self.job_service)
        self.reembed = ReembedService(self, self.job_service)
        self.sync = SyncService(self, self.queue)
        self.classify = ClassifyService(self, self.job_service)
        self.search = SearchService(self, self.text_cache)
        self.similarity = SimilarityService(self)
        self.collections = CollectionsService(
            lambda: self.weaviate, lambda: self.model_id, self.blob_collector
        )
        self.facets = FacetsService(lambda: self.weaviate)
        self.images = ImagesService(settings, lambda: self.weaviate, lambda: self.blobs, self.blob_collector)
        self.export = ExportService(
            lambda: self.weaviate, self.encodable_collection, lambda: self.encoder.dim, settings.staging_dir
        )
        self.embeddings = EmbeddingsService(lambda: self.encoder, settings)
        self.backup = BackupService(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(settings=settings, celery=make_celery(settings))

    def start(self) -> None:
        """Start-up work: the Weaviate schema, once per process instead of per request. A dependency that
        is not up yet is not fatal: requests report it (503) and the schema is ensured where it is used."""
        decoder_for(self.settings).warm()  # a decode process ready for the first search by image
        try:
            self.ensure_schema()
        except Exception as exc:  # Weaviate or the model not ready: /health says so
            log.warning(
                "could not ensure the Weaviate schema at start-up: %s: %s", exc.__class__.__name__, exc
            )


def services() -> Services:
    """The Services of the app that handles the current request."""
    found: Services = current_app.extensions[EXTENSION_KEY]
    return found


def install(app: Flask, svc: Services) -> None:
    app.extensions[EXTENSION_KEY] = svc
