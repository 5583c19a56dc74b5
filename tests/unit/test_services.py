"""Application services with the JobQueue port swapped for an in-memory queue (no Celery, no broker)."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from indexer.errors import InvalidInput, ModelMismatch, require_model
from indexer.jobs.store import JobState
from indexer.services.ingest import IngestService, Upload
from indexer.services.jobs import MAX_WAITERS, JobsService
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


class _EndingJob:
    """The part of JobStore that a waiting report reads: the state, which ends after `ends_after_s`."""

    def __init__(self, ends_after_s: float) -> None:
        self.ends_at = time.monotonic() + ends_after_s
        self.reads = 0

    def state(self, job_id: str) -> JobState:
        self.reads += 1
        return JobState.COMPLETED if time.monotonic() >= self.ends_at else JobState.RUNNING

    def get(self, job_id: str) -> JobState:
        return self.state(job_id)


def test_a_waiting_report_answers_as_soon_as_the_job_ends() -> None:
    store = _EndingJob(ends_after_s=0.3)
    service = JobsService(store, InMemoryJobQueue())  # type: ignore[arg-type]
    t0 = time.monotonic()
    assert service.report("j", wait_s=10) is JobState.COMPLETED
    assert 0.3 <= time.monotonic() - t0 < 1.0
    assert service.report("j") is JobState.COMPLETED  # an ended job answers at once


def test_a_report_waits_no_longer_than_asked_and_answers_with_progress() -> None:
    service = JobsService(_EndingJob(ends_after_s=60), InMemoryJobQueue())  # type: ignore[arg-type]
    t0 = time.monotonic()
    assert service.report("j", wait_s=0.2) is JobState.RUNNING
    assert 0.2 <= time.monotonic() - t0 < 0.8
    t0 = time.monotonic()
    assert service.report("j") is JobState.RUNNING  # no wait asked: at once
    assert time.monotonic() - t0 < 0.1


def test_reports_past_the_waiter_limit_answer_at_once() -> None:
    service = JobsService(_EndingJob(ends_after_s=60), InMemoryJobQueue())  # type: ignore[arg-type]
    waiting = [
        threading.Thread(target=service.report, args=("j",), kwargs={"wait_s": 1.5})
        for _ in range(MAX_WAITERS)
    ]
    for thread in waiting:
        thread.start()
    time.sleep(0.2)  # every waiter holds its place
    t0 = time.monotonic()
    assert service.report("j", wait_s=1.5) is JobState.RUNNING
    assert time.monotonic() - t0 < 0.5
    for thread in waiting:
        thread.join()
    t0 = time.monotonic()
    service.report("j", wait_s=0.3)  # the places are free again
    assert time.monotonic() - t0 >= 0.3


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
        def get(self, job_id: str) -> JobReport:
            return report

    reason: list[str | None] = ["1 of 3 nodes answer"]
    service = JobsService(_Store(), InMemoryJobQueue(), quorum=lambda: reason[0])  # type: ignore[arg-type]
    assert service.report("j").paused == "vector store has no quorum: 1 of 3 nodes answer"
    reason[0] = None
    assert service.report("j").paused is None
    report = report.model_copy(update={"state": JobState.COMPLETED})
    reason[0] = "1 of 3 nodes answer"
    assert service.report("j").paused is None  # an ended job waits on nothing
