"""The ingest use case: new images into the collection's own model (blobs, thumbnails, image objects),
on the staged chunk runner (indexer/pipeline/runner.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from indexer.jobs.store import ItemOutcome, JobReport, Outcome
from indexer.pipeline.chunk import Chunk, IngestRuntime, Pending
from indexer.storage.gc import BlobCollector
from indexer.store.collections import CollectionInfo
from indexer.store.images import ImageRecord, ImageStore


class IngestUseCase:
    """New images into the collection's own model: blobs, thumbnails and image objects."""

    thumbnails = True

    def model_id(self, info: CollectionInfo, options: dict[str, Any]) -> str:
        return info.model_id

    def store(self, chunk: Chunk, fresh: list[Pending], vectors: NDArray[np.float32]) -> None:
        rt = chunk.rt
        # Pinned from before the blobs are written until the objects that refer to them are stored, so
        # that a delete elsewhere of the same bytes cannot collect them in between (indexer/storage/gc.py).
        with BlobCollector(rt.weaviate, rt.jobs.redis, rt.blobs).pinned([p.sha256 for p in fresh]):
            errors = _store(rt, chunk.job_id, chunk.collection, chunk.options, fresh, chunk.store, vectors)
        chunk.record_many(
            [
                ItemOutcome(p.index, Outcome.FAILED, p.item.name, f"vector store: {errors[p.uuid]}")
                if p.uuid in errors
                else ItemOutcome(p.index, Outcome.INDEXED)
                for p in fresh
            ]
        )
        self.stored(chunk, [p for p in fresh if p.uuid not in errors])

    def stored(self, chunk: Chunk, written: list[Pending]) -> None:
        """After a batch's objects are written: nothing more for an ingest (a folder sync then deletes
        the old versions of changed files, indexer/pipeline/sync.py)."""

    def finished(self, rt: IngestRuntime, report: JobReport) -> None:
        """No final step: an ingest job completes with its last outcome."""


def _store(
    rt: IngestRuntime,
    job_id: str,
    collection: str,
    options: dict[str, Any],
    fresh: list[Pending],
    store: ImageStore,
    vectors: NDArray[np.float32],
) -> dict[str, str]:
    """Write the blobs and the image objects; returns uuid -> error for the objects that failed."""
    records = []
    now = datetime.now(UTC)
    for p in fresh:
        rt.blobs.put_original(p.sha256, p.data)
        rt.blobs.put_thumbnail(p.sha256, p.thumbnail)
        records.append(
            ImageRecord(
                id=p.uuid,
                collection=collection,
                filename=p.item.name,
                source=p.item.source,
                sha256=p.sha256,
                format=p.format,
                width=p.width,
                height=p.height,
                bytes=len(p.data),
                ingested_at=now,
                job_id=job_id,
                tags=list(options.get("tags") or []),
                metadata=dict(options.get("metadata") or {}),
                **p.photo,
            )
        )
    return store.insert(records, np.asarray(vectors))
