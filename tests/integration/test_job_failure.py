"""A job that fails as a whole says why in GET /jobs/<id> (JobStore.fail's reason reaches JobReport)."""

from __future__ import annotations

import hashlib

import pytest
import redis

from indexer.jobs.kinds import JobKind
from indexer.jobs.store import Hold, ItemOutcome, JobState, JobStore, Outcome
from indexer.services.jobs import JobsService
from indexer.services.queue import TaskKind
from indexer.settings import Settings
from tests.imagegen import make_image
from tests.integration.conftest import Api
from tests.integration.helpers import new_collection, upload, wait_job
from workers.celery_factory import make_celery
from workers.queue import CeleryJobQueue

pytestmark = pytest.mark.integration


def _jobs(settings: Settings) -> JobsService:
    assert settings.redis_url
    store = JobStore(redis.Redis.from_url(settings.redis_url), settings.job_ttl_s)
    return JobsService(store, CeleryJobQueue(make_celery(settings)))


def test_a_reembed_job_for_a_model_the_worker_does_not_run_fails_with_the_reason(
    api: Api, settings: Settings
) -> None:
    name = new_collection(api, "fail")
    data = make_image(4100)
    assert wait_job(api, upload(api, name, [("a.jpg", data)])["job_id"])["done"] == 1
    model = api.get(f"/collections/{name}").json()["model_id"]
    # A re-embed job towards a model that no worker runs, queued through the same port as the API's.
    job_id = _jobs(settings).start(
        JobKind.REEMBED,
        name,
        [{"kind": "stored", "sha256": hashlib.sha256(data).hexdigest(), "name": "a.jpg"}],
        task=TaskKind.INGEST_CHUNK,
        chunk_size=settings.ingest_chunk_size,
        options={"from_model": model, "to_model": "no-such-model"},
    )
    report = wait_job(api, job_id)
    assert report["state"] == "failed", report
    assert "no-such-model" in report["failure"] and f"this worker runs {model}" in report["failure"]
    # the collection is untouched
    assert api.get(f"/collections/{name}").json()["count"] == 1


def test_a_job_failed_through_the_service_reports_its_reason(api: Api, settings: Settings) -> None:
    service = _jobs(settings)
    job_id = service.store.create("upload", "nowhere", [{"kind": "rejected", "name": "x", "reason": "r"}])
    assert api.get(f"/jobs/{job_id}").json()["failure"] is None
    service.fail(job_id, "the staging area is gone")
    report = api.get(f"/jobs/{job_id}").json()
    assert (report["state"], report["failure"]) == ("failed", "the staging area is gone")


def test_fail_remaining_fails_only_open_items_once(settings: Settings) -> None:
    from indexer.jobs.store import Outcome

    store = _jobs(settings).store
    job_id = store.create("label", "nowhere", [{"id": str(i), "name": f"n{i}"} for i in range(4)])
    store.record(job_id, 1, Outcome.INDEXED)
    assert store.fail_remaining(job_id, 0, 4, "gave up") == 3
    assert store.fail_remaining(job_id, 0, 4, "again") == 0
    report = store.get(job_id)
    assert (report.state.value, report.failed, report.done) == ("completed", 3, 1)
    assert {e.file: e.reason for e in report.errors} == {"n0": "gave up", "n2": "gave up", "n3": "gave up"}


def test_outcomes_and_claims_in_one_round_trip_keep_their_one_at_a_time_meaning(settings: Settings) -> None:
    """The store stage records a batch in one pipeline and the read stage claims a batch's contents in
    one: in order, first claim wins, an item's second outcome is refused, the last outcome completes."""
    assert settings.redis_url
    store = JobStore(redis.Redis.from_url(settings.redis_url), settings.job_ttl_s)
    job = store.create("upload", "pipelined", [{"kind": "upload", "name": f"{i}.jpg"} for i in range(4)])
    assert store.claim_contents(job, [("a", 0), ("b", 1), ("a", 2)]) == [0, 1, 0]
    assert store.claim_contents(job, [("a", 3), ("b", 1)]) == [0, 1]  # a re-delivery gets the same owners
    assert store.claim_contents(job, []) == [] and store.record_many(job, []) == []
    first = [
        ItemOutcome(0, Outcome.INDEXED),
        ItemOutcome(2, Outcome.DUPLICATE),
        ItemOutcome(0, Outcome.FAILED),
    ]
    assert store.record_many(job, first) == [True, True, False]
    assert store.get(job).state is JobState.QUEUED
    last = [ItemOutcome(1, Outcome.FAILED, "1.jpg", "bad"), ItemOutcome(3, Outcome.DUPLICATE)]
    assert store.record_many(job, last) == [True, True]
    report = store.get(job)
    assert (report.state, report.done, report.duplicates, report.failed) == (JobState.COMPLETED, 1, 2, 1)
    assert [(e.file, e.reason) for e in report.errors] == [("1.jpg", "bad")]


def test_a_job_with_a_final_step_completes_only_when_its_worker_closes_it(settings: Settings) -> None:
    """A re-embed's last outcome leaves it running (its worker switches the collection first, then closes
    it); an ingest job completes with its last outcome, as before."""
    store = _jobs(settings).store
    held = store.create(JobKind.REEMBED, "c", [{"kind": "stored", "sha256": "a" * 64, "name": "a.jpg"}])
    plain = store.create("upload", "c", [{"kind": "rejected", "name": "x", "reason": "r"}])
    for job in (held, plain):
        store.mark_running(job)
        store.record(job, 0, Outcome.INDEXED)
    assert (store.state(held), store.state(plain)) == (JobState.RUNNING, JobState.COMPLETED)
    assert store.get(held).processed == 1
    store.close(held)
    assert store.state(held) is JobState.COMPLETED


@pytest.mark.parametrize(("flag", "hold"), [("1", Hold.OPEN), ("step", Hold.STEP), ("0", Hold.NONE)])
def test_a_record_written_before_the_hold_field_keeps_its_open_flag_meaning(
    settings: Settings, flag: str, hold: Hold
) -> None:
    """Records written before `hold` carry the `open` flag ("1" an open upload, "step" held for its final
    step, "0" closed): the store and its scripts read it as the same hold."""
    store = _jobs(settings).store
    job = store.create(JobKind.UPLOAD, "c", [{"kind": "rejected", "name": "x", "reason": "r"}])
    store.redis.hdel(store.keys(job)[0], "hold")
    store.redis.hset(store.keys(job)[0], "open", flag)
    assert store.hold(job) is hold
    store.mark_running(job)
    store.record(job, 0, Outcome.INDEXED)
    assert store.state(job) is (JobState.COMPLETED if hold is Hold.NONE else JobState.RUNNING)
    if hold is Hold.OPEN:
        assert store.append(job, [{"kind": "rejected", "name": "y", "reason": "r"}]) == 2
        store.record(job, 1, Outcome.INDEXED)
    if hold is not Hold.NONE:
        store.close(job)
        assert store.state(job) is JobState.COMPLETED
