"""What the sweeper reads and writes in Redis: the open jobs, their items without an outcome, the mark
of each sweep, and the lock that elects the one process that sweeps.

The use case (which jobs are stalled, what to re-enqueue, when to give up) is
indexer.services.recovery.Sweeper; this module only knows the job records (indexer/jobs/store.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from indexer.jobs.store import PREFIX, UNFINISHED, JobState, JobStore, Outcome, _text

LOCK = "clipsearch:jobs:sweeper"


@dataclass(frozen=True, slots=True)
class OpenJob:
    """What the sweeper needs of a queued or running job."""

    id: str
    kind: str
    state: JobState
    total: int
    processed: int
    progress_at: float
    paused_until: float
    open_ended: bool
    sweeps: int  # sweeps in a row that found no progress since the one before
    swept_processed: int  # `processed` at the last sweep


_FIELDS = [
    "state",
    "kind",
    "total",
    Outcome.INDEXED.value,
    Outcome.FAILED.value,
    Outcome.DUPLICATE.value,
    "progress_at",
    "created_at",
    "paused_until",
    "hold",
    "open",
    "sweeps",
    "swept_processed",
]


def open_jobs(jobs: JobStore) -> Iterator[OpenJob]:
    """The jobs in UNFINISHED that are still queued or running (an entry whose job is gone or ended is
    dropped from the set)."""
    keys = sorted(_text(k) for k in jobs.redis.smembers(UNFINISHED))
    if not keys:
        return
    pipe = jobs.redis.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, _FIELDS)
    for key, values in zip(keys, pipe.execute(), strict=True):
        f = dict(zip(_FIELDS, [_text(v) if v is not None else None for v in values], strict=True))
        if f["state"] not in (JobState.QUEUED.value, JobState.RUNNING.value):
            jobs.redis.srem(UNFINISHED, key)
            continue
        yield OpenJob(
            id=key.removeprefix(PREFIX),
            kind=f["kind"] or "",
            state=JobState(f["state"]),
            total=int(f["total"] or 0),
            processed=sum(int(f[o.value] or 0) for o in Outcome),
            progress_at=float(f["progress_at"] or f["created_at"] or 0),
            paused_until=float(f["paused_until"] or 0),
            open_ended=f["hold"] == "open" or (f["hold"] is None and f["open"] == "1"),  # older: `open`
            sweeps=int(f["sweeps"] or 0),
            swept_processed=int(f["swept_processed"] or -1),
        )


def items_without_outcome(jobs: JobStore, job_id: str, total: int) -> list[int]:
    """Indexes of the job's planned items that have no outcome, in order."""
    done = {int(_text(i)) for i in jobs.redis.hkeys(jobs.keys(job_id)[2])}
    return [i for i in range(total) if i not in done]


def mark_swept(jobs: JobStore, job: OpenJob, sweeps: int, now: float) -> None:
    """Remember this sweep: the count in a row without progress, the progress it saw, and `now` as the
    job's last sign of life (so the next sweep comes a whole stall bound later)."""
    jobs.redis.eval(_MARK, 1, jobs.keys(job.id)[0], sweeps, job.processed, now)


def hold_lock(jobs: JobStore, owner: str, ttl_s: float) -> bool:
    """Take or renew the sweeper's lock for `ttl_s`; True when `owner` holds it (one sweeper at a time
    among all the workers; a dead holder's lock expires)."""
    ttl_ms = max(1, round(ttl_s * 1000))
    if jobs.redis.set(LOCK, owner, nx=True, px=ttl_ms):
        return True
    renewed = jobs.redis.eval(_RENEW, 1, LOCK, owner, ttl_ms)
    return bool(renewed)


def release_lock(jobs: JobStore, owner: str) -> None:
    jobs.redis.eval(_RELEASE, 1, LOCK, owner)


# Only a job still active: a hash that ended (or expired) in between is left as it is.
_MARK = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'sweeps', ARGV[1], 'swept_processed', ARGV[2], 'progress_at', ARGV[3])
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
