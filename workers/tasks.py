"""Task bodies: a few lines each over indexer."""

from __future__ import annotations

import logging
from typing import Any

import redis
import weaviate.exceptions as wvx
from celery import Task, shared_task, signals

from indexer.errors import ServiceUnavailable
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
        process_chunk(RUNTIME.get(), job_id, start, end)
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
        labelling.label_chunk(rt.weaviate, rt.jobs, job_id, start, end)
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            labelling.fail_remaining(rt.jobs, job_id, start, end, f"gave up after retries: {exc}")
            return
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc
    except Exception as exc:
        log.exception("label chunk %s[%d:%d] failed", job_id, start, end)
        labelling.fail_remaining(rt.jobs, job_id, start, end, f"{exc.__class__.__name__}: {exc}")
