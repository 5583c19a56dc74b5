"""Application services with the JobQueue port swapped for an in-memory queue (no Celery, no broker)."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from indexer.errors import InvalidInput, ModelMismatch, require_model
from indexer.jobs.store import JobState
from indexer.services import jobs as jobs_service
from indexer.services.ingest import IngestService, Upload
from indexer.services.jobs import MAX_WAIT_S, MAX_WAITERS, WAIT_POLL_S, JobsService
from indexer.services.queue import ChunkPayload, InMemoryJobQueue, TaskKind
from indexer.settings import Settings
from indexer.store.collections import CollectionInfo
from tests.imagegen import make_image


class _Backends:
    """The part of Backends that planning an upload uses: settings and the collection check."""

    def __init__(self, settings: Settings, model_id: str = "m1") -> None:
        self.settings = settings
        self.model_id = model_id

    def encodable_collection(self, name: str) -> CollectionInfo:
        info = CollectionInfo(name=name, model_id="m1", created_at=datetime.now(UTC))
        require_model(f"collection {name!r}", info.model_id, self.model_id)
        return info


class _NoOptions(BaseModel):
    pass


class _Jobs:
    """The part of JobStore that starting a job uses (JobStore itself is tested against real Redis)."""

    def __init__(self) -> None:
        self.created: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}

    def create(self, kind: str, collection: str, items: list[dict[str, Any]], **kw: Any) -> str:
        job_id = kw.get("job_id") or f"{len(self.created):032x}"
        self.created[job_id] = (kind, collection, items)
        return str(job_id)


@pytest.fixture
def jobs() -> _Jobs:
    return _Jobs()


def test_upload_plans_stages_and_enqueues_one_task_per_chunk(tmp_path: Path, jobs: _Jobs) -> None:
    settings = Settings(data_dir=tmp_path, ingest_chunk_size=2)
    queue = InMemoryJobQueue()
    service = IngestService(_Backends(settings), JobsService(jobs, queue))  # type: ignore[arg-type]
    files = [Upload(f"{i}.jpg", "image/jpeg", io.BytesIO(make_image(i))) for i in range(5)]
    files.append(Upload("empty.jpg", "image/jpeg", io.BytesIO(b"")))
    started = service.upload("trip", files, _NoOptions())
    assert started.accepted == 5 and [r.file for r in started.rejected] == ["empty.jpg"]
    assert queue.sent == [
        (TaskKind.INGEST_CHUNK, ChunkPayload(job_id=started.job_id, start=s, end=e))
        for s, e in [(0, 2), (2, 4), (4, 6)]
    ]
    kind, collection, items = jobs.created[started.job_id]
    assert (kind, collection, len(items)) == ("upload", "trip", 6)
    assert len(list((settings.staging_dir / started.job_id).iterdir())) == 5


def test_nothing_usable_is_refused_and_nothing_is_enqueued(tmp_path: Path, jobs: _Jobs) -> None:
    settings = Settings(data_dir=tmp_path)
    queue = InMemoryJobQueue()
    service = IngestService(_Backends(settings), JobsService(jobs, queue))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no usable image"):
        service.upload("trip", [Upload("a.txt", "image/png", io.BytesIO(b"hello"))], _NoOptions())
    assert queue.sent == [] and jobs.created == {}


def test_another_model_is_one_error_a_409(tmp_path: Path, jobs: _Jobs) -> None:
    queue = InMemoryJobQueue()
    backends = _Backends(Settings(data_dir=tmp_path), model_id="m2")
    service = IngestService(backends, JobsService(jobs, queue))  # type: ignore[arg-type]
    with pytest.raises(ModelMismatch) as caught:
        service.urls("trip", ["https://example.org/a.jpg"], _NoOptions())
    assert caught.value.details == {"model_id": "m1", "expected_model": "m2"}
    assert caught.value.code == "model_mismatch" and queue.sent == []
    from search_api.errors import status_for

    assert status_for(caught.value) == 409


class _Clock:
    """Stands in for the `time` module in indexer.services.jobs: `sleep` moves `monotonic` on at once, so
    a test reads how long a report waited from the clock instead of measuring it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(jobs_service, "time", fake)
    return fake


class _EndingJob:
    """The part of JobStore that a waiting report reads: the state, which ends at its `ends_at_read`-th
    read (never, when None). `get` is the report itself and does not count as a read."""

    def __init__(self, ends_at_read: int | None) -> None:
        self.ends_at_read = ends_at_read
        self.reads = 0

    def state(self, job_id: str) -> JobState:
        self.reads += 1
        ended = self.ends_at_read is not None and self.reads >= self.ends_at_read
        return JobState.COMPLETED if ended else JobState.RUNNING

    def get(self, job_id: str, **_: object) -> JobState:
        ended = self.ends_at_read is not None and self.reads >= self.ends_at_read
        return JobState.COMPLETED if ended else JobState.RUNNING


def test_a_waiting_report_answers_as_soon_as_the_job_ends(clock: _Clock) -> None:
    store = _EndingJob(ends_at_read=5)
    service = JobsService(store, InMemoryJobQueue())  # type: ignore[arg-type]
    assert service.report("j", wait_s=10) is JobState.COMPLETED
    # It polled until the read that saw the end, and not once more: four pauses between five reads.
    assert store.reads == 5 and clock.sleeps == [WAIT_POLL_S] * 4
    assert service.report("j") is JobState.COMPLETED  # an ended job answers at once
    assert store.reads == 5 and len(clock.sleeps) == 4


def test_a_report_waits_no_longer_than_asked_and_answers_with_progress(clock: _Clock) -> None:
    store = _EndingJob(ends_at_read=None)
    service = JobsService(store, InMemoryJobQueue())  # type: ignore[arg-type]
    assert service.report("j", wait_s=0.2) is JobState.RUNNING
    assert 0.2 - 1e-9 <= sum(clock.sleeps) <= 0.2 + WAIT_POLL_S + 1e-9
    assert store.reads == len(clock.sleeps) + 1  # read, pause, ..., read past the deadline
    # No wait asked: no read of the state and no pause, the report at once.
    reads, pauses = store.reads, len(clock.sleeps)
    assert service.report("j") is JobState.RUNNING
    assert (store.reads, len(clock.sleeps)) == (reads, pauses)
    # A longer wait than MAX_WAIT_S is cut to it.
    clock.sleeps.clear()
    service.report("j", wait_s=MAX_WAIT_S * 10)
    assert MAX_WAIT_S - 1e-6 <= sum(clock.sleeps) <= MAX_WAIT_S + WAIT_POLL_S + 1e-6


class _HeldJob:
    """A job whose state reads hold their reader until `release` (the first MAX_WAITERS of them, which
    then see the job end); any later read answers at once. `entered` counts the reads begun."""

    def __init__(self) -> None:
        self.entered = 0
        self.lock = threading.Condition()
        self.release = threading.Event()

    def state(self, job_id: str) -> JobState:
        with self.lock:
            self.entered += 1
            held = self.entered <= MAX_WAITERS
            self.lock.notify_all()
        if held:
            assert self.release.wait(timeout=60), "the test never released its waiters"
        return JobState.COMPLETED

    def get(self, job_id: str, **_: object) -> str:
        return "report"


def test_reports_past_the_waiter_limit_answer_at_once() -> None:
    store = _HeldJob()
    service = JobsService(store, InMemoryJobQueue())  # type: ignore[arg-type]
    answers: list[object] = []
    waiting = [
        threading.Thread(target=lambda: answers.append(service.report("j", wait_s=10)))
        for _ in range(MAX_WAITERS)
    ]
    for thread in waiting:
        thread.start()
    with store.lock:  # every waiter holds its place, inside its first read of the state
        assert store.lock.wait_for(lambda: store.entered == MAX_WAITERS, timeout=60)
    # One report more: no place is free, so it does not read the state at all and answers at once.
    assert service.report("j", wait_s=10) == "report"
    assert store.entered == MAX_WAITERS
    store.release.set()
    for thread in waiting:
        thread.join()
    assert answers == ["report"] * MAX_WAITERS
    # The places are free again: the next waiting report reads the state.
    assert service.report("j", wait_s=10) == "report"
    assert store.entered == MAX_WAITERS + 1


def test_a_running_job_reports_a_lost_quorum_at_once() -> None:
    from indexer.jobs.store import JobReport

    report = JobReport(
        id="j",
        kind="upload",
        collection="c",
        state=JobState.RUNNING,
        total=2,
        done=0,
        failed=0,
        duplicates=0,
        processed=0,
        created_at=0.0,
    )

    class _Store:
        def get(self, job_id: str, **_: object) -> JobReport:
            return report

    reason: list[str | None] = ["1 of 3 nodes answer"]
    service = JobsService(_Store(), InMemoryJobQueue(), quorum=lambda: reason[0])  # type: ignore[arg-type]
    assert service.report("j").paused == "vector store has no quorum: 1 of 3 nodes answer"
    reason[0] = None
    assert service.report("j").paused is None
    report = report.model_copy(update={"state": JobState.COMPLETED})
    reason[0] = "1 of 3 nodes answer"
    assert service.report("j").paused is None  # an ended job waits on nothing
