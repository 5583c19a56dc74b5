"""Open upload jobs' bounds (issue 23): at most MAX_OPEN_JOBS open at once, and an open job left idle
(OPEN_JOB_IDLE_S with no file taken and no item waiting: a closed tab, a client that went away) is
ended as failed and its staged files removed.

The sweep runs in the workers (workers/sweeper.py): they can reach the staging area of every deployment
(the local DATA_DIR/staging on one machine, the object store when scaled out) and already clean it when a
job ends, while the API may run as many gunicorn processes with no background thread of their own.
Every worker ticks every OPEN_JOB_SWEEP_S; the one that takes the Redis lock for this tick (SET NX with a
TTL just under the interval) sweeps, the others skip. Each expiry is one atomic script, so a second
sweeper that overlapped would find nothing more to do.
"""

from __future__ import annotations

import logging
import math
import time

import redis

from indexer.errors import NotFound, TooManyRequests
from indexer.jobs.open_index import Expiry, OpenIndex
from indexer.jobs.store import JobStore
from indexer.settings import Settings
from indexer.storage.staging import remove_staging

log = logging.getLogger(__name__)

SWEEP_LOCK = "clipsearch:jobs:open:sweep"
LOCK_SHARE = 0.9  # of the interval: the leader's lock ends before its next tick, so it can take it again


def reserve_open_job(store: JobStore, settings: Settings, job_id: str) -> None:
    """Count a new open job against MAX_OPEN_JOBS, or refuse it (429) with the reason and, as Retry-After,
    when the least recently active open job expires at the earliest."""
    index = OpenIndex(store)
    if index.reserve(job_id, settings.max_open_jobs):
        return
    oldest = index.oldest_activity()
    wait_s = settings.open_job_idle_s if oldest is None else oldest + settings.open_job_idle_s - time.time()
    raise TooManyRequests(
        f"{settings.max_open_jobs} upload jobs are open already (MAX_OPEN_JOBS): close or cancel one, "
        f"or wait for an idle one to expire (OPEN_JOB_IDLE_S = {settings.open_job_idle_s:g} s)",
        {"reason": "too_many_open_jobs", "limit": settings.max_open_jobs},
        retry_after_s=retry_after(wait_s, settings.open_job_sweep_s),
    )


def retry_after(wait_s: float, sweep_s: float) -> int:
    """Whole seconds until an idle job can have been swept: its idle time left plus one sweep interval."""
    return max(1, math.ceil(max(0.0, wait_s) + sweep_s))


def touch_open_job(store: JobStore, job_id: str) -> None:
    OpenIndex(store).touch(job_id)


def forget_open_job(store: JobStore, job_id: str) -> None:
    """The job is no longer open (closed, cancelled, or its creation failed): its slot is free."""
    OpenIndex(store).forget(job_id)


def expiry_reason(settings: Settings) -> str:
    return (
        f"open upload job idle for more than {settings.open_job_idle_s:g} s (OPEN_JOB_IDLE_S): "
        "expired, its staged files removed"
    )


def sweep_open_jobs(store: JobStore, settings: Settings, now: float) -> list[str]:
    """Expire the open jobs idle since ``now - OPEN_JOB_IDLE_S`` and remove their staged files (and the
    staging of indexed jobs that ended otherwise); returns the ids expired."""
    index = OpenIndex(store)
    cutoff = now - settings.open_job_idle_s
    expired: list[str] = []
    for job_id in index.idle(cutoff):
        try:
            outcome = index.expire(job_id, cutoff, expiry_reason(settings))
        except NotFound:  # not a job id at all
            index.forget(job_id)
            continue
        if outcome in (Expiry.EXPIRED, Expiry.ENDED):
            remove_staging(settings, job_id)
        if outcome is Expiry.EXPIRED:
            expired.append(job_id)
    return expired


def sweep_if_leader(client: redis.Redis, settings: Settings, name: str, now: float) -> list[str] | None:
    """One sweep if this process takes this tick's lock (None: another one has it)."""
    lock_ms = max(1, int(settings.open_job_sweep_s * 1000 * LOCK_SHARE))
    if not client.set(SWEEP_LOCK, name, nx=True, px=lock_ms):
        return None
    expired = sweep_open_jobs(JobStore(client, settings.job_ttl_s), settings, now)
    if expired:
        log.info("expired %d idle open upload job(s): %s", len(expired), ", ".join(expired))
    return expired
