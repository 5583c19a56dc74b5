"""The public contract of a chunk use case: what a job's kind does with the staged chunk runner's
shared stages (indexer/pipeline/runner.py: read and hash, decode and preprocess, infer).

A use case receives a `Chunk` (what every stage of one chunk needs, and how to record outcomes) and the
`Pending` items that reached it with their vectors; ingest (indexer/pipeline/ingest.py) and re-embed
(indexer/pipeline/reembed.py) implement it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import weaviate
from numpy.typing import NDArray

from indexer import metrics
from indexer.jobs.store import ItemOutcome, JobReport, JobStore, Outcome
from indexer.model.encoder import ClipEncoder
from indexer.settings import Settings
from indexer.sources.items import JobItem
from indexer.storage.blobs import BlobStore
from indexer.store.collections import CollectionInfo
from indexer.store.images import ImageStore


@dataclass
class IngestRuntime:
    """What a worker process holds for the life of the process."""

    settings: Settings
    weaviate: weaviate.WeaviateClient
    jobs: JobStore
    blobs: BlobStore
    encoder: ClipEncoder


@dataclass
class Pending:
    """One item on its way through the pipeline. The decoded pixels are never kept: the preparation
    thread makes the thumbnail and the model input from them and drops them."""

    index: int
    item: JobItem
    data: bytes
    sha256: str
    uuid: str
    format: str = ""
    width: int = 0
    height: int = 0
    thumbnail: bytes = b""
    photo: dict[str, Any] = field(default_factory=dict)  # ImageRecord fields (indexer/pipeline/photo.py)


_COUNTERS = {
    Outcome.INDEXED: metrics.images_indexed,
    Outcome.FAILED: metrics.images_failed,
    Outcome.DUPLICATE: metrics.images_duplicate,
}


def record_outcome(
    jobs: JobStore, job_id: str, index: int, outcome: Outcome, file: str = "", reason: str = ""
) -> None:
    record_outcomes(jobs, job_id, [ItemOutcome(index, outcome, file, reason)])


def record_outcomes(jobs: JobStore, job_id: str, outcomes: list[ItemOutcome]) -> None:
    """Record the outcomes and count those that were new in the metrics (a re-delivered chunk's are not)."""
    for outcome, new in zip(outcomes, jobs.record_many(job_id, outcomes), strict=True):
        if new:
            _COUNTERS[outcome.outcome]()


@dataclass
class Chunk:
    """What every stage of one chunk needs."""

    rt: IngestRuntime
    job_id: str
    collection: str
    options: dict[str, Any]
    store: ImageStore
    use: ChunkUseCase

    def record(self, index: int, outcome: Outcome, file: str = "", reason: str = "") -> None:
        record_outcome(self.rt.jobs, self.job_id, index, outcome, file, reason)

    def record_many(self, outcomes: list[ItemOutcome]) -> None:
        """Several outcomes in one round trip to Redis."""
        record_outcomes(self.rt.jobs, self.job_id, outcomes)


class ChunkUseCase(Protocol):
    """What one kind of job does with the pipeline's shared stages (read and hash, decode and
    preprocess, infer): which model's index it writes, whether it makes thumbnails, how it stores a
    batch of vectors (recording each item's outcome), and, for a kind with a final step, the step that
    ends the job once every item has an outcome. An ingest (indexer.pipeline.ingest.IngestUseCase) and a
    re-embed (indexer.pipeline.reembed.ReembedUseCase) are the two."""

    thumbnails: bool

    def model_id(self, info: CollectionInfo, options: dict[str, Any]) -> str: ...

    def store(self, chunk: Chunk, fresh: list[Pending], vectors: NDArray[np.float32]) -> None: ...

    def finished(self, rt: IngestRuntime, report: JobReport) -> None: ...


@runtime_checkable
class VectorUseCase(Protocol):
    """What a kind of job whose chunks need no bytes and no inference does with a chunk (labelling works
    from the stored vectors, indexer.pipeline.labelling.LabelUseCase). The runner gives it the same
    prologue (an ended job is skipped, a queued one starts running), crash accounting (a chunk that keeps
    killing its worker is split until the item that does it is failed) and end (`finished`, then the
    staging area of an ended job goes) as the staged use cases; it records each of its items' outcomes."""

    def process(
        self, rt: IngestRuntime, job_id: str, options: dict[str, Any], start: int, end: int
    ) -> None: ...

    def finished(self, rt: IngestRuntime, report: JobReport) -> None: ...
