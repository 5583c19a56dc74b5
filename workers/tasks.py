"""Task bodies: a few lines each over indexer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
import weaviate.exceptions as wvx
from celery import Task, shared_task, signals
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from indexer.errors import ServiceUnavailable, dependency_failure
from indexer.ingest import fail_remaining, process_chunk
from workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)
RUNTIME = WorkerRuntime()
TRANSIENT = (
    ServiceUnavailable,
    redis.ConnectionError,
    redis.TimeoutError,
    wvx.WeaviateConnectionError,
    wvx.WeaviateTimeoutError,
    wvx.UnexpectedStatusCodeError,
)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT) or dependency_failure(exc) is not None


def _through_outages(run: Callable[[], None]) -> None:
    """Run a chunk, re-running it in this process (it is idempotent) while Redis or Weaviate is briefly
    away, for up to TASK_OUTAGE_RETRY_S. Celery's own retry must publish a message to Redis, so during a
    Redis outage it cannot, and the chunk would be dropped; past this budget it is Celery's turn."""
    budget = RUNTIME.settings().task_outage_retry_s
    for attempt in Retrying(
        retry=retry_if_exception(_is_transient),
        wait=wait_exponential(multiplier=0.5, max=5),
        stop=stop_after_delay(budget),
        before_sleep=lambda state: log.warning(
            "dependency unavailable, re-running the chunk: %s", state.outcome and state.outcome.exception()
        ),
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


@shared_task(name="clipsearch.ping")
def ping() -> str:
    """A round trip through Redis and a real worker; /health and the tests use it."""
    return "pong"


@shared_task(name="clipsearch.ingest_chunk", bind=True, max_retries=5)
def ingest_chunk(self: Task[Any, Any], job_id: str, start: int, end: int) -> None:
    """Embed and store items [start, end) of a job. Idempotent: safe to re-run after a crash."""
    try:
        _through_outages(lambda: process_chunk(RUNTIME.get(), job_id, start, end))
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            fail_remaining(RUNTIME.get(), job_id, start, end, f"gave up after retries: {exc}")
            return
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc
    except Exception as exc:
        log.exception("ingest chunk %s[%d:%d] failed", job_id, start, end)
        fail_remaining(RUNTIME.get(), job_id, start, end, f"internal error: {exc.__class__.__name__}: {exc}")


@shared_task(name="clipsearch.label_chunk", bind=True, max_retries=5)
def label_chunk(self: Task[Any, Any], job_id: str, start: int, end: int) -> None:
    """Label images [start, end) of a bulk-label job from their stored vectors. Idempotent."""
    from indexer.classify import labelling

    rt = RUNTIME.get()
    try:
        _through_outages(lambda: labelling.label_chunk(rt.weaviate, rt.jobs, job_id, start, end))
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            labelling.fail_remaining(rt.jobs, job_id, start, end, f"gave up after retries: {exc}")
            return
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc
    except Exception as exc:
        log.exception("label chunk %s[%d:%d] failed", job_id, start, end)
        labelling.fail_remaining(rt.jobs, job_id, start, end, f"{exc.__class__.__name__}: {exc}")
