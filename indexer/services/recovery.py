"""No job hangs: the sweeper finds the items of a job that nothing is processing and runs them again.

A chunk can be lost in the broker in several ways that no worker sees: a message written just before
Redis died (and missing from its log), a delivery whose worker died while Redis was away, a retry or a
split that could not be published. The job record still knows every item without an outcome, so:

- A queued or running job whose last progress (a new outcome, or the last sweep) is older than
  JOB_STALL_S, that is not paused (indexer/jobs/pause.py), while the queue holds no message waiting for
  a worker, is stalled: its items without an outcome are enqueued again as new chunks (of the kind's
  chunk size). Re-running is safe: outcomes are recorded once, content claims and the objects' ids keep
  an image from being stored twice, and a chunk whose items all have outcomes does nothing.
- A job that makes no progress over JOB_MAX_SWEEPS sweeps in a row cannot be processed: its open items
  are failed with the reason and the job ends `failed`, never `running` for ever.
- A job of FINAL_STEP_KINDS whose items all have outcomes but which has not ended (its final step never
  ran) gets one chunk again, whose end runs the step.

So every item reaches an outcome, or is run again, within JOB_STALL_S + JOB_SWEEP_INTERVAL_S of the last
progress once the queue has drained. One process sweeps at a time (a Redis lock, indexer/jobs/sweep.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from indexer.jobs.kinds import FINAL_STEP_KINDS
from indexer.jobs.store import JobStore
from indexer.jobs.sweep import (
    OpenJob,
    hold_lock,
    items_without_outcome,
    mark_swept,
    open_jobs,
    release_lock,
)
from indexer.pipeline.labelling import JOB_KIND as LABEL_KIND
from indexer.services.queue import ChunkPayload, JobQueue, TaskKind
from indexer.settings import Settings
from indexer.store.connection import nodes_without_quorum

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did: jobs whose chunks it enqueued again (with how many items), jobs it failed."""

    requeued: dict[str, int]
    failed: list[str]


def runs(indexes: list[int], size: int) -> list[tuple[int, int]]:
    """[start, end) ranges over sorted `indexes`: contiguous runs, each at most `size` long."""
    ranges: list[tuple[int, int]] = []
    for index in indexes:
        if ranges and ranges[-1][1] == index and index - ranges[-1][0] < size:
            ranges[-1] = (ranges[-1][0], index + 1)
        else:
            ranges.append((index, index + 1))
    return ranges


@dataclass
class Sweeper:
    jobs: JobStore
    queue: JobQueue
    backlog: Callable[[], int]  # messages waiting in the broker for a worker
    settings: Settings

    @classmethod
    def over(
        cls, client: redis.Redis, queue: JobQueue, backlog: Callable[[], int], settings: Settings
    ) -> Sweeper:
        return cls(JobStore(client, settings.job_ttl_s), queue, backlog, settings)

    def sweep(self, now: float | None = None) -> SweepReport:
        now = time.time() if now is None else now
        report = SweepReport({}, [])
        stalled = [job for job in open_jobs(self.jobs) if self._stalled(job, now)]
        if not stalled or self.backlog() > 0:  # work is still queued: whatever it holds runs first
            return report
        for job in stalled:
            self._sweep_job(job, now, report)
        return report

    def _stalled(self, job: OpenJob, now: float) -> bool:
        return job.paused_until <= now and now - job.progress_at >= self.settings.job_stall_s

    def _sweep_job(self, job: OpenJob, now: float, report: SweepReport) -> None:
        sweeps = job.sweeps + 1 if job.processed == job.swept_processed else 1
        open_items = items_without_outcome(self.jobs, job.id, job.total)
        if sweeps > self.settings.job_max_sweeps and open_items:
            self._give_up(job, open_items, sweeps - 1)
            report.failed.append(job.id)
            return
        task, size = self._task(job.kind)
        if open_items:
            for start, end in runs(open_items, size):
                self.queue.enqueue(task, ChunkPayload(job_id=job.id, start=start, end=end))
        elif job.kind in FINAL_STEP_KINDS and job.total > 0:
            self.queue.enqueue(task, ChunkPayload(job_id=job.id, start=job.total - 1, end=job.total))
        else:
            return  # an open upload waiting for its client to close it, or an empty job: nothing to run
        mark_swept(self.jobs, job, sweeps, now)
        report.requeued[job.id] = len(open_items)
        log.warning(
            "job %s made no progress for %.0f s: %d items without an outcome enqueued again (sweep %d of %d)",
            job.id,
            now - job.progress_at,
            len(open_items),
            sweeps,
            self.settings.job_max_sweeps,
        )

    def _task(self, kind: str) -> tuple[TaskKind, int]:
        if kind == LABEL_KIND:
            return TaskKind.LABEL_CHUNK, self.settings.label_chunk_size
        return TaskKind.INGEST_CHUNK, self.settings.ingest_chunk_size

    def _give_up(self, job: OpenJob, open_items: list[int], sweeps: int) -> None:
        reason = (
            f"{len(open_items)} items got no outcome although they were enqueued again {sweeps} times, "
            f"each after {self.settings.job_stall_s:g} s without progress (JOB_STALL_S, JOB_MAX_SWEEPS): "
            "no worker could process them"
        )
        log.error("job %s: %s", job.id, reason)
        self.jobs.fail(job.id, reason)
        for start, end in runs(open_items, len(open_items)):
            self.jobs.fail_remaining(job.id, start, end, reason)


def lead_round(sweeper: Sweeper, owner: str) -> None:
    """One round: sweep if `owner` holds the sweeper's lock (taken or renewed now, for two intervals)."""
    if hold_lock(sweeper.jobs, owner, 2 * sweeper.settings.job_sweep_interval_s):
        sweeper.sweep()


def step_down(sweeper: Sweeper, owner: str) -> None:
    """Give the lock up at shutdown, so that another worker leads at once (else it expires by itself)."""
    try:
        release_lock(sweeper.jobs, owner)
    except Exception as exc:  # Redis away: the lock expires after two intervals anyway
        log.warning("sweeper: could not release the lock: %s", exc)


class QuorumProbe:
    """`nodes_without_quorum` for the reports of a process, probed at most every `every_s` seconds."""

    def __init__(self, settings: Settings, every_s: float = 2.0) -> None:
        self.settings = settings
        self.every_s = every_s
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._reason: str | None = None

    def __call__(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.every_s:
                self._reason, self._at = nodes_without_quorum(self.settings), now
            return self._reason
