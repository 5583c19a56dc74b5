"""The staged chunk runner: one chunk of a job. Ingest and re-embed run on its stages: read, hash,
de-duplicate, decode, embed in one batch, store (the use case's own step, indexer/pipeline/chunk.py),
record; labelling (a VectorUseCase) runs in their place. All share its prologue, crash accounting
(`run_chunk`), failure (`fail_remaining`) and end (`_finish`).

Safe to run twice for the same chunk (a worker died, Redis re-delivered the task): outcomes already
recorded are skipped, objects already written by this job count as indexed, and object ids come from
the content hash, so nothing is stored or counted twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from indexer import metrics
from indexer.errors import ClipsearchError, DependencyUnavailable, dependency_failure
from indexer.jobs.kinds import FINAL_STEP_KINDS, JobKind
from indexer.jobs.store import FINAL_STATES, ItemOutcome, JobState, Outcome
from indexer.model.batching import planned_size
from indexer.pipeline.chunk import Chunk, ChunkUseCase, IngestRuntime, Pending, VectorUseCase, record_outcome
from indexer.pipeline.inflight import ByteBudget
from indexer.pipeline.ingest import IngestUseCase
from indexer.pipeline.labelling import LabelUseCase
from indexer.pipeline.photo import photo_fields
from indexer.pipeline.reembed import ReembedUseCase
from indexer.pipeline.sync import SyncUseCase
from indexer.settings import Settings
from indexer.sources.items import check_item, item_name
from indexer.sources.reader import ItemReader
from indexer.storage.staging import remove_staging
from indexer.store.collections import get_collection
from indexer.store.images import ImageStore
from indexer.store.schema import image_uuid

log = logging.getLogger(__name__)


_STAGE_POLL_S = 0.1


class _Stopped(Exception):
    """Another stage of the chunk's pipeline failed or the job was cancelled: stop this one."""


class _Cancelled(Exception):
    """The job was cancelled while its chunk ran."""


@dataclass
class _Stages:
    """The hand-offs between the pipeline's stages: bounded queues (so at most a few batches are in
    flight) and one stop flag that every blocking wait checks."""

    stop: threading.Event
    to_infer: queue.Queue[list[Pending] | None]
    to_store: queue.Queue[tuple[Sequence[Pending], list[Any]] | None]
    budget: ByteBudget  # the raw bytes of the items in flight (INGEST_MAX_BYTES_IN_FLIGHT)

    def release(self, items: Sequence[Pending]) -> None:
        """These items left the pipeline: their raw bytes are dropped (a stage's variables may still
        refer to the item for a while) and go back to the budget."""
        size = 0
        for p in items:
            size += len(p.data)
            p.data = b""
        self.budget.give(size)

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

    def batches(self) -> Iterator[list[Pending]]:
        while (batch := self.get(self.to_infer)) is not None:
            yield batch


UseCase = ChunkUseCase | VectorUseCase
USE_CASES: dict[JobKind, Callable[[], UseCase]] = {
    JobKind.UPLOAD: IngestUseCase,
    JobKind.ZIP: IngestUseCase,
    JobKind.FOLDER: IngestUseCase,
    JobKind.URLS: IngestUseCase,
    JobKind.REEMBED: ReembedUseCase,
    JobKind.LABEL: LabelUseCase,
    JobKind.SYNC: SyncUseCase,
}


def use_case_for(kind: str) -> UseCase:
    """The use case that runs the chunks of a job of this kind; ValueError for an unknown kind."""
    try:
        return USE_CASES[JobKind(kind)]()
    except (KeyError, ValueError):
        raise ValueError(f"job kind {kind!r} has no chunk use case") from None


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
        record_outcome(rt.jobs, job_id, index, Outcome.FAILED, item_name(item, index), reason)
    _finish(rt, job_id)


def process_chunk(rt: IngestRuntime, job_id: str, start: int, end: int) -> None:
    """Items [start, end) of a job: an ended job's are skipped, a queued job starts running, and its
    kind's use case runs them (on the stages, or in their place for a VectorUseCase)."""
    jobs = rt.jobs
    if jobs.state(job_id) in FINAL_STATES:
        cleanup_staging(rt, job_id)
        return
    jobs.mark_running(job_id)
    report = jobs.get(job_id, with_errors=False)
    options = jobs.options(job_id)
    try:
        use = use_case_for(report.kind)
    except ValueError as exc:  # a record this worker cannot run: the job fails with the reason
        jobs.fail(job_id, str(exc))
        cleanup_staging(rt, job_id)
        return
    if isinstance(use, VectorUseCase):
        use.process(rt, job_id, options, start, end)
        _finish(rt, job_id)
    else:
        _run_stages(rt, job_id, report.collection, options, use, start, end)


def _run_stages(
    rt: IngestRuntime,
    job_id: str,
    collection: str,
    options: dict[str, Any],
    use: ChunkUseCase,
    start: int,
    end: int,
) -> None:
    """Items [start, end) of a job, as a pipeline of four stages that overlap across its batches:

    read and hash (a thread) -> decode, thumbnail and preprocess (the encoder's preparation threads)
    -> inference (this thread, one session, full batches) -> store (a thread: blobs, one Weaviate batch,
    Redis outcomes). While batch k is in ONNX Runtime, batch k+1 is being decoded and batch k-1 written.
    """
    jobs = rt.jobs
    info = get_collection(rt.weaviate, collection, with_count=False)
    model_id = use.model_id(info, options)  # a re-embed writes into the target model's index
    if model_id != rt.encoder.model_id:
        jobs.fail(
            job_id,
            f"job needs model {model_id} for collection {info.name!r}; this worker runs "
            f"{rt.encoder.model_id}",
        )
        return
    store = ImageStore(rt.weaviate, model_id, ensure=True)  # a re-embed may be the first writer of a model
    chunk = Chunk(rt, job_id, info.name, options, store, use)
    budget = ByteBudget(rt.settings.ingest_max_bytes_in_flight)
    stages = _Stages(threading.Event(), queue.Queue(maxsize=1), queue.Queue(maxsize=1), budget)
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


def _read_stage(chunk: Chunk, stages: _Stages, start: int, end: int) -> None:
    """Read, hash and de-duplicate the chunk's items; hand them on in batches (short first ones, so
    inference starts early). Items that already have an outcome (a re-delivered chunk) are skipped."""
    rt, jobs, job_id = chunk.rt, chunk.rt.jobs, chunk.job_id
    items = jobs.items(job_id, start, end)
    indexes = list(range(start, start + len(items)))
    already = jobs.recorded(job_id, indexes)
    reader = ItemReader(rt.settings, job_id)
    # The batch sizes for the items to read; an item that fails to read, or the byte budget, only makes a
    # batch end sooner or later than planned, and past the plan the batches are full.
    plan = rt.encoder.batch_plan(sum(1 for i in indexes if i not in already))
    handed = 0
    size = planned_size(plan, handed, rt.encoder.batch_size)
    batch: list[Pending] = []  # read and hashed, not yet claimed
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
            except DependencyUnavailable:
                raise  # an outage, not the item's fault: the chunk is re-run once it is over
            except ClipsearchError as exc:
                chunk.record(index, Outcome.FAILED, item_name(raw, index), exc.message)
                continue
            except Exception as exc:  # one unreadable item fails alone, never its whole chunk
                if dependency_failure(exc) is not None:
                    raise  # as above: the object store of staged uploads is restarting
                log.exception("job %s item %d could not be read", job_id, index)
                reason = f"cannot read: {exc.__class__.__name__}: {exc}"
                chunk.record(index, Outcome.FAILED, item_name(raw, index), reason)
                continue
            if batch and not stages.budget.fits(len(data)):
                _hand_on(chunk, stages, batch)  # the budget comes back only from items handed on
                handed += 1
                batch, size = [], planned_size(plan, handed, rt.encoder.batch_size)
            _take_budget(stages, len(data))
            sha = hashlib.sha256(data).hexdigest()
            _crash_hook(rt.settings, sha)
            batch.append(Pending(index, item, data, sha, image_uuid(chunk.collection, sha)))
            del data  # the Pending holds the bytes now, and drops them when it leaves the pipeline
            if len(batch) >= size:
                _hand_on(chunk, stages, batch)
                handed += 1
                batch, size = [], planned_size(plan, handed, rt.encoder.batch_size)
        if batch:
            _hand_on(chunk, stages, batch)
    finally:
        reader.close()
    stages.put(stages.to_infer, None)


def _take_budget(stages: _Stages, n: int) -> None:
    """Wait until ``n`` more raw bytes fit in the budget. The inference stage holds a batch while it
    waits for the next one (so that preparation overlaps inference): an empty batch moves it on, so
    that the batches it holds reach the store stage and give their bytes back."""
    while not stages.budget.take(n, _STAGE_POLL_S):
        if stages.stop.is_set():
            raise _Stopped
        with contextlib.suppress(queue.Full):
            stages.to_infer.put_nowait([])


def _hand_on(chunk: Chunk, stages: _Stages, batch: list[Pending]) -> None:
    """Claim the batch's contents (a later item of the job with the same bytes is a duplicate); objects
    this job already wrote (before a crash) count as indexed, those an earlier upload wrote as
    duplicates; the rest go to inference."""
    owners = chunk.rt.jobs.claim_contents(chunk.job_id, [(p.sha256, p.index) for p in batch])
    claimed: list[Pending] = []
    outcomes: list[ItemOutcome] = []
    done: list[Pending] = []
    for p, owner in zip(batch, owners, strict=True):
        if owner == p.index:
            claimed.append(p)
        else:
            outcomes.append(ItemOutcome(p.index, Outcome.DUPLICATE))
            done.append(p)
    existing = chunk.store.existing([p.uuid for p in claimed]) if claimed else {}
    fresh: list[Pending] = []
    for p in claimed:
        if p.uuid in existing:
            outcome = Outcome.INDEXED if existing[p.uuid] == chunk.job_id else Outcome.DUPLICATE
            outcomes.append(ItemOutcome(p.index, outcome))
            done.append(p)
        else:
            fresh.append(p)
    chunk.record_many(outcomes)
    stages.release(done)
    if fresh:
        stages.put(stages.to_infer, fresh)


def _preparer(rt: IngestRuntime, thumbnails: bool) -> Callable[[Pending, NDArray[np.float32]], None]:
    """Decode, thumbnail and preprocess one item into its batch slot; the pixels die on return."""
    settings, encoder = rt.settings, rt.encoder
    cfg, min_side = encoder.preprocess_cfg, encoder.min_decode_side

    thumbnail_size = settings.thumbnail_size if thumbnails else 0

    def prepare(p: Pending, slot: NDArray[np.float32]) -> None:
        # in a limited decode process (DECODE_ISOLATION): only the tensor and the thumbnail come back
        try:
            meta = encoder.decoder.prepare(
                p.data,
                settings.max_image_pixels,
                cfg,
                slot,
                min_side=min_side,
                thumbnail_size=thumbnail_size,
                photo=thumbnails,  # an ingest (a re-embed keeps the stored record's fields)
            )
        except ClipsearchError as exc:
            # The item's failure outlives this call (until its outcome is recorded): without the frames
            # below, which hold the raw bytes, it does not keep them past the byte budget.
            raise exc.with_traceback(None) from None
        p.format, p.width, p.height, p.thumbnail = meta.format, meta.width, meta.height, meta.thumbnail
        if meta.photo is not None:
            p.photo = photo_fields(meta.photo, p.item)

    return prepare


def _store_stage(chunk: Chunk, stages: _Stages) -> None:
    jobs, job_id = chunk.rt.jobs, chunk.job_id
    while (done := stages.get(stages.to_store)) is not None:
        batch, outcomes = done
        fresh: list[Pending] = []
        vectors: list[NDArray[np.float32]] = []
        failed: list[ItemOutcome] = []
        for p, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, ClipsearchError):
                failed.append(ItemOutcome(p.index, Outcome.FAILED, p.item.name, outcome.message))
            else:
                fresh.append(p)
                vectors.append(outcome)
        chunk.record_many(failed)
        if fresh:
            if jobs.state(job_id) is JobState.CANCELLED:
                raise _Cancelled
            chunk.use.store(chunk, fresh, np.stack(vectors))
        stages.release(batch)


def _finish(rt: IngestRuntime, job_id: str) -> None:
    """After a chunk: a job of a kind with a final step whose every item has an outcome runs its final step (a
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
    failed = rt.jobs.fail_remaining(job_id, start, end, reason)
    if rt.jobs.get(job_id, with_errors=False).kind != JobKind.LABEL:  # the metrics count images, not labels
        metrics.images_failed(failed)
    try:
        _finish(rt, job_id)
    except Exception as exc:  # any error of the step: the job must end, and says why
        log.exception("job %s: its final step failed", job_id)
        rt.jobs.fail(job_id, f"{reason}; then its final step failed: {exc.__class__.__name__}: {exc}")
        cleanup_staging(rt, job_id)
