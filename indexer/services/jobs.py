"""The jobs use case: start a job (record its plan, enqueue its chunks), report, list, cancel, fail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from indexer.jobs import JobReport, JobStore, chunks
from indexer.services.queue import ChunkPayload, JobQueue, TaskKind


@dataclass
class JobsService:
    store: JobStore
    queue: JobQueue

    def start(
        self,
        kind: str,
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

    def report(self, job_id: str) -> JobReport:
        """State, counts, rate, ETA, every failed file with its reason, and why a failed job failed."""
        return self.store.get(job_id)

    def list(self, limit: int, offset: int) -> list[JobReport]:
        return self.store.list(limit, offset)

    def cancel(self, job_id: str) -> JobReport:
        return self.store.cancel(job_id)

    def fail(self, job_id: str, reason: str) -> None:
        self.store.fail(job_id, reason)
