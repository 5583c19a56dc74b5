"""Task bodies: one call each over indexer; retries and backoff are Celery's own options."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis
import weaviate.exceptions as wvx
from celery import Task, shared_task, signals
from celery.exceptions import SoftTimeLimitExceeded
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from indexer.errors import QuorumUnavailable, ServiceUnavailable, dependency_failure, quorum_lost
from indexer.services.chunks import ChunkService
from indexer.services.queue import ChunkPayload, TaskKind
from indexer.services.sync import SyncPlanService
from workers.queue import CeleryJobQueue
from workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)
RUNTIME = WorkerRuntime()
CHUNKS = ChunkService(RUNTIME.get)
SYNC = SyncPlanService(RUNTIME.get)
TRANSIENT = (
    ServiceUnavailable,
    redis.ConnectionError,
    redis.TimeoutError,
    wvx.WeaviateConnectionError,
    wvx.WeaviateTimeoutError,
    wvx.UnexpectedStatusCodeError,
)


def _is_transient(exc: BaseException) -> bool:
    """An outage worth re-running the chunk in place for; a lost quorum is not one (the job pauses)."""
    return (isinstance(exc, TRANSIENT) or dependency_failure(exc) is not None) and _no_quorum(exc) is None


def _no_quorum(exc: BaseException) -> QuorumUnavailable | None:
    """The lost quorum that this error means: Weaviate said so, or the vector store is away and a majority
    of the cluster's nodes does not answer (a write to a node that just died fails with a reset stream or
    a deadline long before the survivors call their peers dead)."""
    down = dependency_failure(exc)
    if isinstance(down, QuorumUnavailable):
        return down
    # any outage but Redis's (a failed connect to the vector store is a plain ServiceUnavailable)
    vector_store = down.dependency == "weaviate" if down is not None else isinstance(exc, ServiceUnavailable)
    if not vector_store:
        return None
    with contextlib.suppress(Exception):
        reason = CHUNKS.quorum_lost()
        if reason is not None:
            return quorum_lost(f"{reason} ({exc.__class__.__name__})")
    return None


def _through_outages(run: Callable[[], None], job_id: str | None = None) -> None:
    """Run a chunk, re-running it in this process (it is idempotent) while Redis or Weaviate is briefly
    away, for up to TASK_OUTAGE_RETRY_S. Celery's own retry must publish a message to Redis, so during a
    Redis outage it cannot, and the chunk would be dropped; past this budget it is Celery's turn. While
    it waits on the vector store, the job says so (`paused` in its report)."""
    budget = RUNTIME.settings().task_outage_retry_s

    def waiting(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("dependency unavailable, re-running the chunk: %s", exc)
        down = dependency_failure(exc) if exc is not None else None
        if job_id is not None and down is not None and down.dependency == "weaviate":
            with contextlib.suppress(Exception):  # the report is a courtesy: never a reason to fail
                CHUNKS.pause(job_id, f"waiting for the vector store: {exc}"[:400], budget)

    for attempt in Retrying(
        retry=retry_if_exception(_is_transient),
        wait=wait_exponential(multiplier=0.5, max=5),
        stop=stop_after_delay(budget),
        before_sleep=waiting,
        reraise=True,
    ):
        with attempt:
            run()


@signals.worker_process_init.connect(weak=False)
def _warm_up(**_: object) -> None:
    """Load the ONNX sessions when a pool process starts, not inside the first chunk."""
    try:
        RUNTIME.get().encoder.load()
    except Exception:  # the first task retries and reports what is wrong
        log.exception("could not prepare the worker runtime at start-up")


def _run(chunk: Callable[[], None], job_id: str | None = None) -> None:
    """Run a chunk through short outages (above); an outage that outlasts them is raised as transient,
    so that Celery's own retry (autoretry_for, with backoff) takes over."""
    try:
        _through_outages(chunk, job_id)
    except TRANSIENT:
        raise
    except Exception as exc:  # any client's error may mean an outage: dependency_failure decides; re-raised
        down = dependency_failure(exc)
        if down is not None:
            raise down from exc
        raise


class ChunkTask(Task):
    """A task over items [start, end) of a job. Transient failures are retried by Celery with
    exponential backoff (2, 4, 8... s, at most 60 s, 5 times); when the chunk still fails (retries
    spent, or a bug), `on_failure` fails its remaining items with the reason, so the job still ends."""

    autoretry_for = TRANSIENT
    max_retries = 5
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = False

    def fail_chunk(self, job_id: str, start: int, end: int, reason: str) -> None:
        raise NotImplementedError

    def on_failure(
        self, exc: Exception, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], einfo: Any
    ) -> None:
        job_id, start, end = args
        if isinstance(exc, TRANSIENT):
            reason = f"gave up after retries: {exc}"
        elif isinstance(exc, SoftTimeLimitExceeded):
            reason = f"the task ran past its time limit ({self.request.timelimit[1] or '?'} s for its items)"
        else:
            reason = f"internal error: {exc.__class__.__name__}: {exc}"
            log.error("chunk %s[%d:%d] failed", job_id, start, end, exc_info=exc)
        try:
            self.fail_chunk(job_id, start, end, reason)
        except Exception:  # Redis still away: the items stay open, the job is re-run by a later chunk
            log.exception("could not record the failure of chunk %s[%d:%d]", job_id, start, end)


class IngestChunkTask(ChunkTask):
    def fail_chunk(self, job_id: str, start: int, end: int, reason: str) -> None:
        CHUNKS.fail(job_id, start, end, reason)


class LabelChunkTask(ChunkTask):
    def fail_chunk(self, job_id: str, start: int, end: int, reason: str) -> None:
        CHUNKS.fail(job_id, start, end, reason)


@shared_task(name=TaskKind.PING.value)
def ping() -> str:
    """A task that does nothing: a smoke test of the queue."""
    return "pong"


def _run_chunk(task: ChunkTask, kind: TaskKind, job_id: str, start: int, end: int) -> None:
    """Run a delivery of chunk [start, end). Each start is counted in Redis and each finish uncounts it,
    so a delivery knows how many times a worker process died on this chunk; past INGEST_MAX_CRASHES the
    chunk is split into one task per item (indexer.services.chunks.ChunkService.run), whose limits scale
    with their size (workers.queue)."""
    queue = CeleryJobQueue(task.app, RUNTIME.settings())
    crashes = CHUNKS.begin_delivery(job_id, start, end)
    try:
        _run(
            lambda: CHUNKS.run(
                job_id,
                start,
                end,
                crashes,
                lambda a, b: queue.enqueue(kind, ChunkPayload(job_id=job_id, start=a, end=b)),
            ),
            job_id,
        )
    except Exception as exc:  # any client's error may be a lost quorum (_no_quorum decides); others re-raised
        lost = _no_quorum(exc)
        if lost is None:
            raise
        # The vector store lost its quorum: the job waits (and says why) rather than fail items or spend
        # retries; the chunk comes back in JOB_PAUSE_RETRY_S as a new task (its own retries untouched).
        delay = RUNTIME.settings().job_pause_retry_s
        log.warning("chunk %s[%d:%d] paused: %s", job_id, start, end, lost.message)
        # the pause holds until the next try has had its time (a call to a dying cluster may hang a while)
        CHUNKS.pause(job_id, lost.message, delay + RUNTIME.settings().task_outage_retry_s)
        queue.enqueue(kind, ChunkPayload(job_id=job_id, start=start, end=end), delay)
    finally:
        with contextlib.suppress(Exception):  # Redis away: a later delivery counts one crash too many
            CHUNKS.end_delivery(job_id, start, end)


@shared_task(name=TaskKind.INGEST_CHUNK.value, base=IngestChunkTask, bind=True)
def ingest_chunk(self: IngestChunkTask, job_id: str, start: int, end: int) -> None:
    """Embed and store items [start, end) of an ingest or re-embed job. Idempotent: safe to re-run."""
    _run_chunk(self, TaskKind.INGEST_CHUNK, job_id, start, end)


@shared_task(name=TaskKind.LABEL_CHUNK.value, base=LabelChunkTask, bind=True)
def label_chunk(self: LabelChunkTask, job_id: str, start: int, end: int) -> None:
    """Label images [start, end) of a bulk-label job from their stored vectors. Idempotent."""
    _run_chunk(self, TaskKind.LABEL_CHUNK, job_id, start, end)


class SyncTask(ChunkTask):
    def fail_chunk(self, job_id: str, start: int, end: int, reason: str) -> None:
        SYNC.fail(job_id, f"the sync could not be planned: {reason}")


@shared_task(name=TaskKind.SYNC_FOLDER.value, base=SyncTask, bind=True)
def sync_folder(self: SyncTask, job_id: str, start: int, end: int) -> None:
    """Plan a folder sync (hash the folder, compare, move and remove) and queue its ingest chunks.
    A second delivery of a plan that began fails the job rather than queue its files twice."""
    queue = CeleryJobQueue(self.app, RUNTIME.settings())
    _run(
        lambda: SYNC.plan(
            job_id,
            lambda a, b: queue.enqueue(TaskKind.INGEST_CHUNK, ChunkPayload(job_id=job_id, start=a, end=b)),
        )
    )
