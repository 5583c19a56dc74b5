"""The folder sync's chunk use case: its changed and new files are ingested like any folder's
(indexer/pipeline/ingest.py); once a changed file's new image is stored, the old image at that path is
deleted, and its blobs when nothing else refers to them. (The sync's plan: indexer/sync/plan.py.)"""

from __future__ import annotations

from indexer.pipeline.chunk import Chunk, Pending
from indexer.pipeline.ingest import IngestUseCase
from indexer.storage.gc import BlobCollector
from indexer.store.folder_images import delete, replaced_by


class SyncUseCase(IngestUseCase):
    def stored(self, chunk: Chunk, written: list[Pending]) -> None:
        old = replaced_by(chunk.store, chunk.collection, {p.item.source: p.sha256 for p in written})
        if old:
            delete(chunk.store, old)
            rt = chunk.rt
            BlobCollector(rt.weaviate, rt.jobs.redis, rt.blobs).collect(image.sha256 for image in old)
