"""The folder sync use case: keep a collection in step with a server-side folder (under FOLDER_ROOTS).

The API side (`SyncService.start`) checks the collection and the folder (the folder ingest's planning
and safety checks) and starts an open `sync` job with one SYNC_FOLDER task; the worker side
(`SyncPlanService.plan`) hashes the folder, compares it with the collection, applies the moves and
removals and queues the new and changed files as ingest chunks of the same job (indexer/sync/plan.py).
GET /jobs/<id> reports added, replaced, moved, removed and failed (JobReport.sync)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import Conflict, NotFound
from indexer.jobs.kinds import JobKind
from indexer.jobs.store import FINAL_STATES, JobStore, new_job_id
from indexer.pipeline.chunk import IngestRuntime
from indexer.services.backends import Backends
from indexer.services.ingest import JobStarted, Rejected
from indexer.services.queue import ChunkPayload, JobQueue, TaskKind
from indexer.sources.items import RejectedItem
from indexer.sources.plan import plan_folder
from indexer.sync import running
from indexer.sync.plan import plan_sync

__all__ = ["SyncPlanService", "SyncService"]


@dataclass
class SyncService:
    backends: Backends
    queue: JobQueue

    def start(self, name: str, path: str, dry_run: bool, request_id: str | None = None) -> JobStarted:
        """Start a sync of ``path`` into collection ``name``; a dry run changes nothing and reports what
        would change. Forbidden, InvalidInput or NotFound for a folder that may not be used."""
        info = self.backends.encodable_collection(name)
        items = plan_folder(path, self.backends.settings)  # its checks now; the worker walks it again
        refused = [Rejected(file=i.name, reason=i.reason) for i in items if isinstance(i, RejectedItem)]
        jobs, job_id = self.backends.jobs, new_job_id()
        folder = str(Path(path).resolve())
        ttl_s = self.backends.settings.job_ttl_s
        holder = running.claim(
            jobs.redis, info.name, folder, job_id, ttl_s, lambda other: _active(jobs, other)
        )
        if holder is not None:
            raise Conflict(
                f"a sync of {folder} into {info.name} is running (job {holder}): wait for it to end",
                {"reason": "sync_running", "job_id": holder},
            )
        jobs.create(
            JobKind.SYNC,
            info.name,
            [],
            options={"path": path, "dry_run": dry_run},
            request_id=request_id,
            job_id=job_id,
            open_ended=True,  # its items come from the worker's plan; it completes once closed
        )
        self.queue.enqueue(TaskKind.SYNC_FOLDER, ChunkPayload(job_id=job_id, start=0, end=0))
        return JobStarted(job_id=job_id, accepted=len(items) - len(refused), rejected=refused)


def _active(jobs: JobStore, job_id: str) -> bool:
    try:
        return jobs.state(job_id) not in FINAL_STATES
    except NotFound:  # expired
        return False


@dataclass(frozen=True)
class SyncPlanService:
    runtime: Callable[[], IngestRuntime]  # the worker process's clients and encoder

    def plan(self, job_id: str, enqueue: Callable[[int, int], None]) -> None:
        plan_sync(self.runtime(), job_id, enqueue)

    def fail(self, job_id: str, reason: str) -> None:
        """The plan step could not run (retries spent, or a bug): the job ends, saying why."""
        jobs = self.runtime().jobs
        if jobs.state(job_id) not in FINAL_STATES:
            jobs.fail(job_id, reason)
