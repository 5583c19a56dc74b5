"""The jobs use case: start a job (record its plan, enqueue its chunks), report, list, cancel, fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from indexer.jobs.kinds import JobKind
from indexer.jobs.store import FINAL_STATES, JobReport, JobStore, chunks
from indexer.services.open_jobs import forget_open_job
from indexer.services.queue import ChunkPayload, JobQueue, TaskKind
from indexer.settings import Settings
from indexer.storage.staging import remove_staging

__all__ = [
    "FAILURES_LIMIT",
    "FINAL_STATES",
    "MAX_FAILURES_LIMIT",
    "MAX_WAITERS",
    "MAX_WAIT_S",
    "JobReport",
    "JobsService",
]

MAX_WAIT_S = 30.0  # the longest a report waits for its job to end (long polling)
WAIT_POLL_S = 0.025  # how often a waiting report reads the job's state (one HGET)
FAILURES_LIMIT = 100  # failed items in one report unless the caller asks for another page size
MAX_FAILURES_LIMIT = 1000  # the largest page of failed items a report gives (a few hundred KB of JSON)
MAX_WAITERS = 4  # reports waiting at once per process; the others answer at once (they hold API threads)


@dataclass
class JobsService:
    store: JobStore
    queue: JobQueue
    settings: Settings | None = None  # where staged files live: a cancel removes the job's (None: kept)
    _waiters: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_WAITERS), repr=False
    )
    # why the vector store cannot take writes now ("1 of 3 nodes answer"), or None: a running job then
    # reports itself paused at once, before its worker's call to the cluster times out
    quorum: Callable[[], str | None] | None = None

    def start(
        self,
        kind: JobKind,
        collection: str,
        items: list[dict[str, Any]],
        *,
        task: TaskKind,
        chunk_size: int,
        options: dict[str, Any] | None = None,
        request_id: str | None = None,
        job_id: str | None = None,
    ) -> str:
        """Record the job's plan and enqueue one task per chunk of ``chunk_size`` items."""
        job_id = self.store.create(
            kind, collection, items, options=options, request_id=request_id, job_id=job_id
        )
        for start, end in chunks(len(items), chunk_size):
            self.queue.enqueue(task, ChunkPayload(job_id=job_id, start=start, end=end))
        return job_id

    def report(
        self,
        job_id: str,
        wait_s: float = 0.0,
        failures_offset: int = 0,
        failures_limit: int = FAILURES_LIMIT,
    ) -> JobReport:
        """State, counts, rate, ETA, a page of the failed files with their reasons (``failures_limit``
        from ``failures_offset``, at most MAX_FAILURES_LIMIT; the total always), and why a failed job failed.

        With ``wait_s`` (at most MAX_WAIT_S), a job that has not ended is first waited on for up to that
        long, and the report comes as soon as it ends: a client learns of the end at once, without
        polling. When MAX_WAITERS reports already wait in this process, this one answers at once."""
        if wait_s > 0 and self._waiters.acquire(blocking=False):
            try:
                deadline = time.monotonic() + min(wait_s, MAX_WAIT_S)
                while self.store.state(job_id) not in FINAL_STATES and time.monotonic() < deadline:
                    time.sleep(WAIT_POLL_S)
            finally:
                self._waiters.release()
        limit = max(0, min(failures_limit, MAX_FAILURES_LIMIT))
        report = self.store.get(job_id, errors_offset=max(0, failures_offset), errors_limit=limit)
        if self.quorum is not None and report.state not in FINAL_STATES and report.paused is None:
            reason = self.quorum()
            if reason is not None:
                report = report.model_copy(update={"paused": f"vector store has no quorum: {reason}"})
        return report

    def list(self, limit: int, offset: int) -> list[JobReport]:
        return self.store.list(limit, offset)

    def cancel(self, job_id: str) -> JobReport:
        """Cancel the job, free its open-job slot and remove its staged files: a chunk that still runs
        stops at its next check of the state, and nothing else reads them."""
        self.store.cancel(job_id)
        forget_open_job(self.store, job_id)
        if self.settings is not None:
            remove_staging(self.settings, job_id)
        return self.report(job_id)

    def fail(self, job_id: str, reason: str) -> None:
        self.store.fail(job_id, reason)
