"""Open upload jobs (indexer/jobs/store.py) against a real redis-server: append, close, and the refusals."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from indexer.errors import Conflict, NotFound
from indexer.jobs.kinds import JobKind
from indexer.jobs.store import MAX_APPEND, ItemOutcome, JobState, JobStore, Outcome


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, ttl_s=3600)


@pytest.fixture
def open_jobs(store: JobStore) -> JobStore:
    return store


def _items(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "upload", "name": name} for name in names]


def _record_all(store: JobStore, job_id: str, indexes: range) -> None:
    store.record_many(job_id, [ItemOutcome(i, Outcome.INDEXED) for i in indexes])


def _reason(caught: pytest.ExceptionInfo[Conflict]) -> object:
    return caught.value.details["reason"]


def test_appended_items_extend_the_plan_in_order(store: JobStore, open_jobs: JobStore) -> None:
    job = store.create("upload", "trip", [], open_ended=True)
    assert store.get(job).state is JobState.QUEUED and store.get(job).total == 0  # open: not completed
    open_jobs.require_open(job)
    assert open_jobs.append(job, _items("a.jpg", "b.jpg")) == 2
    assert open_jobs.append(job, _items("c.jpg")) == 3
    assert [item["name"] for item in store.items(job, 0, 3)] == ["a.jpg", "b.jpg", "c.jpg"]
    assert store.get(job).total == 3


def test_an_open_job_completes_only_once_closed(store: JobStore, open_jobs: JobStore) -> None:
    job = store.create("upload", "trip", [], open_ended=True)
    open_jobs.append(job, _items("a.jpg", "b.jpg"))
    store.mark_running(job)
    _record_all(store, job, range(2))
    report = store.get(job)
    assert (report.state, report.processed, report.total) == (JobState.RUNNING, 2, 2)
    assert store.count_by_state()["running"] == 1
    # Every item has its outcome: closing completes the job at once, and says what it was before.
    assert open_jobs.close(job) == "running"
    assert store.get(job).state is JobState.COMPLETED and store.get(job).finished_at is not None
    counts = store.count_by_state()
    assert (counts["running"], counts["queued"], counts["completed"]) == (0, 0, 1)
    assert open_jobs.close(job) == "completed"  # closing twice is harmless
    assert store.get(job).state is JobState.COMPLETED and store.count_by_state()["completed"] == 1


def test_a_job_closed_before_its_last_outcome_completes_with_that_outcome(
    store: JobStore, open_jobs: JobStore
) -> None:
    job = store.create("upload", "trip", [], open_ended=True)
    open_jobs.append(job, _items("a.jpg", "b.jpg", "c.jpg"))
    _record_all(store, job, range(2))
    assert open_jobs.close(job) == "queued"
    assert store.get(job).state is JobState.QUEUED  # one item still has no outcome
    store.record(job, 2, Outcome.FAILED, "c.jpg", "undecodable")
    report = store.get(job)
    assert (report.state, report.done, report.failed) == (JobState.COMPLETED, 2, 1)


def test_closing_an_empty_open_job_completes_it(store: JobStore, open_jobs: JobStore) -> None:
    job = store.create("upload", "trip", [], open_ended=True)
    assert open_jobs.close(job) == "queued"
    assert store.get(job).state is JobState.COMPLETED


def test_a_closed_job_takes_no_more_items(store: JobStore, open_jobs: JobStore) -> None:
    job = store.create("upload", "trip", [], open_ended=True)
    open_jobs.append(job, _items("a.jpg"))
    open_jobs.close(job)  # a.jpg has no outcome yet: the job is still active, but closed
    assert store.get(job).state is JobState.QUEUED
    with pytest.raises(Conflict) as caught:
        open_jobs.require_open(job)
    assert _reason(caught) == "job_closed"
    with pytest.raises(Conflict) as appended:
        open_jobs.append(job, _items("b.jpg"))
    assert _reason(appended) == "job_closed"
    assert store.get(job).total == 1 and len(store.items(job, 0, 10)) == 1


def test_an_ended_job_takes_no_more_items(store: JobStore, open_jobs: JobStore) -> None:
    job = store.create("upload", "trip", [], open_ended=True)
    open_jobs.append(job, _items("a.jpg"))
    assert store.cancel(job).state is JobState.CANCELLED
    with pytest.raises(Conflict) as caught:
        open_jobs.require_open(job)
    assert _reason(caught) == "job_ended"
    with pytest.raises(Conflict) as appended:
        open_jobs.append(job, _items("b.jpg"))
    assert _reason(appended) == "job_ended"
    assert store.get(job).total == 1
    assert open_jobs.close(job) == "cancelled" and store.get(job).state is JobState.CANCELLED


@pytest.mark.parametrize("kind", ["upload", JobKind.REEMBED])
def test_a_job_that_was_never_open_takes_no_items(store: JobStore, open_jobs: JobStore, kind: str) -> None:
    """A planned job, and a re-embed held open for its final step (not an open upload)."""
    job = store.create(kind, "trip", _items("a.jpg"))
    with pytest.raises(Conflict) as caught:
        open_jobs.append(job, _items("b.jpg"))
    assert _reason(caught) == "job_closed"
    assert store.get(job).total == 1


def test_unknown_jobs_and_bad_batches_are_refused(store: JobStore, open_jobs: JobStore) -> None:
    unknown = "0" * 32
    with pytest.raises(NotFound):
        open_jobs.require_open(unknown)
    with pytest.raises(NotFound):
        open_jobs.append(unknown, _items("a.jpg"))
    with pytest.raises(NotFound):
        open_jobs.close(unknown)
    job = store.create("upload", "trip", [], open_ended=True)
    with pytest.raises(ValueError, match="append 1 to"):
        open_jobs.append(job, [])
    with pytest.raises(ValueError, match="append 1 to"):
        open_jobs.append(job, _items(*(f"{i}.jpg" for i in range(MAX_APPEND + 1))))
    assert open_jobs.append(job, _items(*(f"{i}.jpg" for i in range(MAX_APPEND)))) == MAX_APPEND
