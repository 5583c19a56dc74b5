"""The open-job bounds (indexer/jobs/open_index.py, indexer/services/open_jobs.py) against a real
redis-server: the cap, idle expiry (not while items wait, not once closed), and paged failures."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import redis

from indexer.errors import TooManyRequests
from indexer.jobs.open_index import OPEN_INDEX, Expiry, OpenIndex
from indexer.jobs.store import ItemOutcome, JobState, JobStore, Outcome, new_job_id
from indexer.services.open_jobs import (
    LOCK_SHARE,
    SWEEP_LOCK,
    reserve_open_job,
    retry_after,
    sweep_if_leader,
    sweep_open_jobs,
)
from indexer.settings import Settings


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    redis_client.delete(OPEN_INDEX)
    return JobStore(redis_client, ttl_s=3600)


def _open(store: JobStore, settings: Settings) -> str:
    job_id = new_job_id()
    reserve_open_job(store, settings, job_id)
    return store.create("upload", "c", [], job_id=job_id, open_ended=True)


def test_the_cap_refuses_a_job_past_max_open_jobs_until_one_is_forgotten(
    store: JobStore, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, max_open_jobs=3)
    jobs = [_open(store, settings) for _ in range(3)]
    with pytest.raises(TooManyRequests) as caught:
        _open(store, settings)
    assert caught.value.details["reason"] == "too_many_open_jobs"
    # Retry-After: when the least recently active job can have expired (its idle time, one sweep later)
    expected = settings.open_job_idle_s + settings.open_job_sweep_s
    assert 1 <= caught.value.retry_after_s <= math.ceil(expected)
    assert caught.value.retry_after_s >= expected - 5
    OpenIndex(store).forget(jobs[0])
    assert _open(store, settings)
    assert OpenIndex(store).count() == 3


def test_an_idle_open_job_expires_and_its_staging_goes(store: JobStore, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, open_job_idle_s=10)
    job = _open(store, settings)
    staged = settings.staging_dir / job / "sub"
    staged.mkdir(parents=True)
    (staged / "000000-a.jpg").write_bytes(b"x")
    now = time.time()
    assert sweep_open_jobs(store, settings, now) == []  # not idle yet
    assert staged.exists()
    assert sweep_open_jobs(store, settings, now + 11) == [job]
    report = store.get(job)
    assert report.state is JobState.FAILED and "OPEN_JOB_IDLE_S" in (report.failure or "")
    assert not (settings.staging_dir / job).exists()
    assert OpenIndex(store).count() == 0
    with pytest.raises(Exception, match="ended"):
        store.append(job, [{"kind": "upload", "name": "late"}])


def test_an_open_job_with_items_waiting_is_not_idle_and_a_closed_one_is_dropped(
    store: JobStore, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, open_job_idle_s=10)
    index = OpenIndex(store)
    busy = _open(store, settings)
    store.append(busy, [{"kind": "upload", "name": "a"}, {"kind": "upload", "name": "b"}])
    store.record_many(busy, [ItemOutcome(0, Outcome.INDEXED)])
    later = time.time() + 11
    assert index.expire(busy, later, "idle") is Expiry.KEPT  # item 1 waits: its idle clock starts again
    assert store.state(busy) is JobState.QUEUED
    store.record_many(busy, [ItemOutcome(1, Outcome.INDEXED)])
    assert index.expire(busy, later + 11, "idle") is Expiry.EXPIRED
    closed = _open(store, settings)
    store.append(closed, [{"kind": "upload", "name": "c"}])
    store.close(closed)
    assert index.expire(closed, later, "idle") is Expiry.CLOSED
    assert store.state(closed) is JobState.QUEUED  # its chunk still runs
    assert index.count() == 0


def test_failed_items_come_a_page_at_a_time_with_their_total(store: JobStore) -> None:
    job = store.create("upload", "c", [{"kind": "upload", "name": str(i)} for i in range(25)])
    failures = [ItemOutcome(i, Outcome.FAILED, f"f{i}", "bad") for i in range(0, 25, 2)]  # 13 failed
    store.record_many(job, failures)
    first = store.get(job, errors_limit=5)
    assert [e.file for e in first.errors] == ["f0", "f2", "f4", "f6", "f8"]
    assert (first.errors_total, first.errors_next_offset) == (13, 5)
    last = store.get(job, errors_offset=10, errors_limit=5)
    assert [e.file for e in last.errors] == ["f20", "f22", "f24"] and last.errors_next_offset is None
    none = store.get(job, errors_limit=0)
    assert none.errors == [] and none.errors_total == 13 and none.errors_next_offset == 0
    assert store.get(job).errors_total == 13 and len(store.get(job).errors) == 13


def test_one_sweeper_per_tick_takes_the_lock(redis_client: redis.Redis, tmp_path: Path) -> None:
    redis_client.delete(SWEEP_LOCK)
    settings = Settings(data_dir=tmp_path, open_job_sweep_s=30)
    now = time.time()
    assert sweep_if_leader(redis_client, settings, "worker-a", now) == []
    assert sweep_if_leader(redis_client, settings, "worker-b", now) is None  # a's tick
    assert 0 < redis_client.pttl(SWEEP_LOCK) <= 30_000 * LOCK_SHARE
    redis_client.delete(SWEEP_LOCK)  # the tick is over
    assert sweep_if_leader(redis_client, settings, "worker-b", now) == []


def test_retry_after_counts_the_idle_time_left_and_one_sweep() -> None:
    assert retry_after(10.2, 0.5) == 11
    assert retry_after(-3, 0.5) == 1  # overdue: the next sweep takes it
    assert retry_after(0, 0) == 1
