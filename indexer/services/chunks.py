"""The worker's use cases: run or fail one chunk of a job (ingest, re-embed or label) on the chunk
runner (indexer/pipeline/runner.py). The tasks (workers/tasks.py) call these and nothing else of the
core."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from indexer.jobs.pause import pause
from indexer.pipeline.chunk import IngestRuntime
from indexer.pipeline.runner import fail_remaining, run_chunk
from indexer.store.connection import nodes_without_quorum

__all__ = ["ChunkService", "IngestRuntime"]


@dataclass(frozen=True)
class ChunkService:
    runtime: Callable[[], IngestRuntime]  # the worker process's clients and encoder, (re)connected

    def begin_delivery(self, job_id: str, start: int, end: int) -> int:
        """Count a start of the chunk; returns how many times its worker died on it before."""
        return self.runtime().jobs.begin_delivery(job_id, start, end)

    def end_delivery(self, job_id: str, start: int, end: int) -> None:
        self.runtime().jobs.end_delivery(job_id, start, end)

    def run(self, job_id: str, start: int, end: int, crashes: int, split: Callable[[int, int], None]) -> None:
        """Items [start, end) of a job of any kind (ingest, re-embed, label), split into one task per item
        past the crash limit (`split(i, i + 1)`)."""
        run_chunk(self.runtime(), job_id, start, end, crashes, split)

    def pause(self, job_id: str, reason: str, for_s: float) -> None:
        """The job waits on something outside it (a vector store without quorum): `reason` shows in its
        report for `for_s` seconds, or until its next outcome."""
        pause(self.runtime().jobs, job_id, reason, for_s)

    def quorum_lost(self) -> str | None:
        """Why the vector store's cluster has no quorum now (a majority of its nodes does not answer)."""
        return nodes_without_quorum(self.runtime().settings)

    def fail(self, job_id: str, start: int, end: int, reason: str) -> None:
        """Fail the chunk's items that have no outcome yet (its retries are spent), so the job still ends."""
        fail_remaining(self.runtime(), job_id, start, end, reason)
