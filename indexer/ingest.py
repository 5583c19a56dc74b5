"""Ingest one chunk of a job: read, hash, de-duplicate, decode, embed in one batch, store, record.

Safe to run twice for the same chunk (a worker died, Redis re-delivered the task): outcomes already
recorded are skipped, objects already written by this job count as indexed, and object ids come from
the content hash, so nothing is stored or counted twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import weaviate
from numpy.typing import NDArray

from indexer import metrics
from indexer.blob_gc import BlobCollector
from indexer.blobs import BlobStore
from indexer.errors import ClipsearchError
from indexer.images import decode_image, make_thumbnail
from indexer.items import JobItem, check_item, item_name
from indexer.jobs import (
    FINAL_STATES,
    FINAL_STEP_KINDS,
    REEMBED,
    ItemOutcome,
    JobReport,
    JobState,
    JobStore,
    Outcome,
)
from indexer.model.encoder import ClipEncoder
from indexer.objectstore import remove_staging
from indexer.preprocess import preprocess
from indexer.reembed import ReembedUseCase
from indexer.settings import Settings
from indexer.sources import ItemReader
from indexer.store.images import ImageRecord, ImageStore
from indexer.store.schema import image_uuid
from indexer.user_collections import CollectionInfo, get_collection

log = logging.getLogger(__name__)


@dataclass
class IngestRuntime:
    """What a worker process holds for the life of the process."""

    settings: Settings
    weaviate: weaviate.WeaviateClient
    jobs: JobStore
    blobs: BlobStore
    encoder: ClipEncoder


@dataclass
class _Pending:
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


_COUNTERS = {
    Outcome.INDEXED: metrics.images_indexed,
    Outcome.FAILED: metrics.images_failed,
    Outcome.DUPLICATE: metrics.images_duplicate,
}
_STAGE_POLL_S = 0.1


def _record(
    jobs: JobStore, job_id: str, index: int, outcome: Outcome, file: str = "", reason: str = ""
) -> None:
    _record_many(jobs, job_id, [ItemOutcome(index, outcome, file, reason)])


def _record_many(jobs: JobStore, job_id: str, outcomes: list[ItemOutcome]) -> None:
    """Record the outcomes and count those that were new in the metrics (a re-delivered chunk's are not)."""
    for outcome, new in zip(outcomes, jobs.record_many(job_id, outcomes), strict=True):
        if new:
            _COUNTERS[outcome.outcome]()


class _Stopped(Exception):
    """Another stage of the chunk's pipeline failed or the job was cancelled: stop this one."""


class _Cancelled(Exception):
    """The job was cancelled while its chunk ran."""


@dataclass
class _Stages:
    """The hand-offs between the pipeline's stages: bounded queues (so at most a few batches are in
    flight) and one stop flag that every blocking wait checks."""

    stop: threading.Event
    to_infer: queue.Queue[list[_Pending] | None]
    to_store: queue.Queue[tuple[Sequence[_Pending], list[Any]] | None]

    def put(self, q: queue.Queue[Any], value: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(value, timeout=_STAGE_POLL_S)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue[Any]) -> Any:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=_STAGE_POLL_S)
            except queue.Empty:
                continue

    def batches(self) -> Iterator[list[_Pending]]:
        while (batch := self.get(self.to_infer)) is not None:
            yield batch


@dataclass
class _Chunk:
    """What every stage of one chunk needs."""

    rt: IngestRuntime
    job_id: str
    collection: str
    options: dict[str, Any]
    store: ImageStore
    use: ChunkUseCase

    def record(self, index: int, outcome: Outcome, file: str = "", reason: str = "") -> None:
        _record(self.rt.jobs, self.job_id, index, outcome, file, reason)

    def record_many(self, outcomes: list[ItemOutcome]) -> None:
        """Several outcomes in one round trip to Redis."""
        _record_many(self.rt.jobs, self.job_id, outcomes)


class ChunkUseCase(Protocol):
    """What one kind of job does with the pipeline's shared stages (read and hash, decode and
    preprocess, infer): which model's index it writes, whether it makes thumbnails, how it stores a
    batch of vectors (recording each item's outcome), and, for a kind of FINAL_STEP_KINDS, the step that
    ends the job once every item has an outcome. An ingest (`IngestUseCase`) and a re-embed
    (indexer.reembed.ReembedUseCase) are the two."""

    thumbnails: bool

    def model_id(self, info: CollectionInfo, options: dict[str, Any]) -> str: ...

    def store(self, chunk: _Chunk, fresh: list[_Pending], vectors: NDArray[np.float32]) -> None: ...

    def finished(self, rt: IngestRuntime, report: JobReport) -> None: ...


class IngestUseCase:
    """New images into the collection's own model: blobs, thumbnails and image objects."""

    thumbnails = True

    def model_id(self, info: CollectionInfo, options: dict[str, Any]) -> str:
        return info.model_id

    def store(self, chunk: _Chunk, fresh: list[_Pending], vectors: NDArray[np.float32]) -> None:
        rt = chunk.rt
        # Pinned from before the blobs are written until the objects that refer to them are stored, so
        # that a delete elsewhere of the same bytes cannot collect them in between (indexer/blob_gc.py).
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

    def finished(self, rt: IngestRuntime, report: JobReport) -> None:
        """No final step: an ingest job completes with its last outcome."""


def use_case_for(kind: str) -> ChunkUseCase:
    """The use case that runs the chunks of a job of this kind."""
    return ReembedUseCase() if kind == REEMBED else IngestUseCase()


def run_chunk(
    rt: IngestRuntime,
    job_id: str,
    start: int,
    end: int,
    crashes: int,
    split: Callable[[int, int], None],
) -> None:
    """A delivery of chunk [start, end) whose worker process died `crashes` times before.

    Below INGEST_MAX_CRASHES it simply runs. A chunk of several items that reached it is split: each item
    without an outcome gets a task of its own (`split(i, i + 1)`), so the item that kills its worker
    is isolated and the others index. A single item that reached it is failed with that reason."""
    limit = rt.settings.ingest_max_crashes
    if crashes < limit:
        process_chunk(rt, job_id, start, end)
        return
    items = rt.jobs.items(job_id, start, end)
    indexes = list(range(start, start + len(items)))
    already = rt.jobs.recorded(job_id, indexes)
    open_items = [(i, item) for i, item in zip(indexes, items, strict=True) if i not in already]
    if len(indexes) > 1:
        log.warning(
            "chunk %s[%d:%d] killed its worker %d times: one task per item for its %d open items",
            job_id,
            start,
            end,
            crashes,
            len(open_items),
        )
        for index, _ in open_items:
            split(index, index + 1)
        return
    for index, item in open_items:
        log.error("job %s item %d killed its worker %d times: failed", job_id, index, crashes)
        reason = (
            f"the worker process died while processing this item ({crashes} times: out of memory, or a "
            "crash in a decoder); it was not indexed"
        )
        _record(rt.jobs, job_id, index, Outcome.FAILED, item_name(item, index), reason)
    _finish(rt, job_id)


def process_chunk(rt: IngestRuntime, job_id: str, start: int, end: int) -> None:
    """Items [start, end) of a job, as a pipeline of four stages that overlap across its batches:

    read and hash (a thread) -> decode, thumbnail and preprocess (the encoder's preparation threads)
    -> inference (this thread, one session, full batches) -> store (a thread: blobs, one Weaviate batch,
    Redis outcomes). While batch k is in ONNX Runtime, batch k+1 is being decoded and batch k-1 written.
    """
    jobs = rt.jobs
    if jobs.state(job_id) in FINAL_STATES:
        cleanup_staging(rt, job_id)
        return
    jobs.mark_running(job_id)
    report = jobs.get(job_id, with_errors=False)
    options = jobs.options(job_id)
    info = get_collection(rt.weaviate, report.collection, with_count=False)
    use = use_case_for(report.kind)
    model_id = use.model_id(info, options)  # a re-embed writes into the target model's index
    if model_id != rt.encoder.model_id:
        jobs.fail(
            job_id,
            f"job needs model {model_id} for collection {info.name!r}; this worker runs "
            f"{rt.encoder.model_id}",
        )
        return
    store = ImageStore(rt.weaviate, model_id, ensure=True)  # a re-embed may be the first writer of a model
    chunk = _Chunk(rt, job_id, info.name, options, store, use)
    stages = _Stages(threading.Event(), queue.Queue(maxsize=1), queue.Queue(maxsize=1))
    with ThreadPoolExecutor(2, thread_name_prefix="ingest-stage") as pool:
        reader = pool.submit(_guarded, stages, _read_stage, chunk, stages, start, end)
        writer = pool.submit(_guarded, stages, _store_stage, chunk, stages)
        try:
            for batch, outcomes in rt.encoder.embed_stream(stages.batches(), _preparer(rt, use.thumbnails)):
                stages.put(stages.to_store, (batch, outcomes))
            stages.put(stages.to_store, None)
        except _Stopped:
            pass
        except BaseException:
            stages.stop.set()
            raise
        finally:
            errors = [f.exception() for f in (reader, writer)]
    first = next((e for e in errors if e is not None and not isinstance(e, _Stopped)), None)
    if isinstance(first, _Cancelled):
        cleanup_staging(rt, job_id)
        return
    if first is not None:
        raise first
    _finish(rt, job_id)


def _guarded(stages: _Stages, stage: Callable[..., None], *args: Any) -> None:
    """Run one stage; when it fails, stop the others (their blocking waits raise _Stopped)."""
    try:
        stage(*args)
    except BaseException:
        stages.stop.set()
        raise


def _crash_hook(settings: Settings, sha256: str) -> None:
    """TEST ONLY (TEST_CRASH_SHA256, empty by default): kill this worker process on these bytes, as an
    out-of-memory kill or a crash in a decoder would. The poison-item integration test sets it."""
    if settings.test_crash_sha256 and sha256 == settings.test_crash_sha256:
        log.error("TEST_CRASH_SHA256 matched item %s: killing this worker process", sha256)
        os.kill(os.getpid(), signal.SIGKILL)


def _read_stage(chunk: _Chunk, stages: _Stages, start: int, end: int) -> None:
    """Read, hash and de-duplicate the chunk's items; hand them on in batches (short first ones, so
    inference starts early). Items that already have an outcome (a re-delivered chunk) are skipped."""
    rt, jobs, job_id = chunk.rt, chunk.rt.jobs, chunk.job_id
    items = jobs.items(job_id, start, end)
    indexes = list(range(start, start + len(items)))
    already = jobs.recorded(job_id, indexes)
    reader = ItemReader(rt.settings, job_id)
    handed = 0
    size = rt.encoder.stream_batch_size(handed)
    batch: list[_Pending] = []  # read and hashed, not yet claimed
    try:
        for index, raw in zip(indexes, items, strict=True):
            if stages.stop.is_set():
                raise _Stopped
            if index in already:
                continue
            try:
                # Redis is a trust boundary: the item is validated first, and a malformed one is failed
                item = check_item(raw, rt.settings, job_id)
                data = reader.read(item)
            except ClipsearchError as exc:
                chunk.record(index, Outcome.FAILED, item_name(raw, index), exc.message)
                continue
            except Exception as exc:  # one unreadable item fails alone, never its whole chunk
                log.exception("job %s item %d could not be read", job_id, index)
                reason = f"cannot read: {exc.__class__.__name__}: {exc}"
                chunk.record(index, Outcome.FAILED, item_name(raw, index), reason)
                continue
            sha = hashlib.sha256(data).hexdigest()
            _crash_hook(rt.settings, sha)
            batch.append(_Pending(index, item, data, sha, image_uuid(chunk.collection, sha)))
            if len(batch) >= size:
                _hand_on(chunk, stages, batch)
                handed += 1
                batch, size = [], rt.encoder.stream_batch_size(handed)
        if batch:
            _hand_on(chunk, stages, batch)
    finally:
        reader.close()
    stages.put(stages.to_infer, None)


def _hand_on(chunk: _Chunk, stages: _Stages, batch: list[_Pending]) -> None:
    """Claim the batch's contents (a later item of the job with the same bytes is a duplicate); objects
    this job already wrote (before a crash) count as indexed, those an earlier upload wrote as
    duplicates; the rest go to inference."""
    owners = chunk.rt.jobs.claim_contents(chunk.job_id, [(p.sha256, p.index) for p in batch])
    claimed: list[_Pending] = []
    outcomes: list[ItemOutcome] = []
    for p, owner in zip(batch, owners, strict=True):
        if owner == p.index:
            claimed.append(p)
        else:
            outcomes.append(ItemOutcome(p.index, Outcome.DUPLICATE))
    existing = chunk.store.existing([p.uuid for p in claimed]) if claimed else {}
    fresh: list[_Pending] = []
    for p in claimed:
        if p.uuid in existing:
            outcome = Outcome.INDEXED if existing[p.uuid] == chunk.job_id else Outcome.DUPLICATE
            outcomes.append(ItemOutcome(p.index, outcome))
        else:
            fresh.append(p)
    chunk.record_many(outcomes)
    if fresh:
        stages.put(stages.to_infer, fresh)


def _preparer(rt: IngestRuntime, thumbnails: bool) -> Callable[[_Pending, NDArray[np.float32]], None]:
    """Decode, thumbnail and preprocess one item into its batch slot; the pixels die on return."""
    settings, encoder = rt.settings, rt.encoder
    cfg, min_side = encoder.preprocess_cfg, encoder.min_decode_side

    def prepare(p: _Pending, slot: NDArray[np.float32]) -> None:
        image = decode_image(p.data, settings.max_image_pixels, min_side=min_side)
        p.format, p.width, p.height = image.format, image.width, image.height
        if thumbnails:
            p.thumbnail = make_thumbnail(image, settings.thumbnail_size)
        preprocess(image.pixels, cfg, out=slot, source=image)

    return prepare


def _store_stage(chunk: _Chunk, stages: _Stages) -> None:
    jobs, job_id = chunk.rt.jobs, chunk.job_id
    while (done := stages.get(stages.to_store)) is not None:
        batch, outcomes = done
        fresh: list[_Pending] = []
        vectors: list[NDArray[np.float32]] = []
        failed: list[ItemOutcome] = []
        for p, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, ClipsearchError):
                failed.append(ItemOutcome(p.index, Outcome.FAILED, p.item.name, outcome.message))
            else:
                fresh.append(p)
                vectors.append(outcome)
        chunk.record_many(failed)
        if not fresh:
            continue
        if jobs.state(job_id) is JobState.CANCELLED:
            raise _Cancelled
        chunk.use.store(chunk, fresh, np.stack(vectors))


def _store(
    rt: IngestRuntime,
    job_id: str,
    collection: str,
    options: dict[str, Any],
    fresh: list[_Pending],
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
            )
        )
    return store.insert(records, np.asarray(vectors))


def _finish(rt: IngestRuntime, job_id: str) -> None:
    """After a chunk: a job of FINAL_STEP_KINDS whose every item has an outcome runs its final step (a
    re-embed switches its collection over), which ends it; the staging area of an ended job is cleaned.
    Every chunk that ends last may run the step (they finish at once on several workers, or a chunk is
    delivered again after a crash in the step): the steps are idempotent."""
    report = rt.jobs.get(job_id, with_errors=False)
    if (
        report.state not in FINAL_STATES
        and report.kind in FINAL_STEP_KINDS
        and report.processed >= report.total
    ):
        use_case_for(report.kind).finished(rt, report)
        report = rt.jobs.get(job_id, with_errors=False)
    if report.state in FINAL_STATES:
        cleanup_staging(rt, job_id)


def cleanup_staging(rt: IngestRuntime, job_id: str) -> None:
    remove_staging(rt.settings, job_id)  # DATA_DIR/staging/<job>, and the object store's when there is one


def fail_remaining(rt: IngestRuntime, job_id: str, start: int, end: int, reason: str) -> None:
    """Fail the chunk's items that have no outcome yet (JobStore.fail_remaining), so the job still
    finishes, and complete the job if that was its last chunk. A final step that fails here too (its
    retries are spent) fails the job with both reasons, rather than leave it running."""
    metrics.images_failed(rt.jobs.fail_remaining(job_id, start, end, reason))
    try:
        _finish(rt, job_id)
    except Exception as exc:  # any error of the step: the job must end, and says why
        log.exception("job %s: its final step failed", job_id)
        rt.jobs.fail(job_id, f"{reason}; then its final step failed: {exc.__class__.__name__}: {exc}")
        cleanup_staging(rt, job_id)
