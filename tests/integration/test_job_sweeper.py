"""The sweeper over real Redis job records (indexer.services.recovery): which jobs it finds stalled, what
it enqueues again, and when it gives up. A Redis of its own, no Weaviate or worker: the queue is the
in-memory port, and time is passed in, so nothing here waits on a clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from clipsearch.redis_server import RedisServer
from indexer.jobs.kinds import JobKind
from indexer.jobs.pause import pause
from indexer.jobs.store import JobState, JobStore, Outcome
from indexer.services.queue import InMemoryJobQueue, TaskKind
from indexer.services.recovery import Sweeper, runs
from indexer.settings import Settings

STALL_S = 60.0


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    root = tmp_path_factory.mktemp("sweeper-redis")
    server = RedisServer(root / "data", root / "logs")
    server.start()
    try:
        yield redis.Redis.from_url(server.url)
    finally:
        server.stop()


def _sweeper(client: redis.Redis, backlog: int = 0) -> tuple[Sweeper, InMemoryJobQueue]:
    settings = Settings(job_stall_s=STALL_S, job_max_sweeps=2, ingest_chunk_size=4)
    queue = InMemoryJobQueue()
    return Sweeper.over(client, queue, lambda: backlog, settings), queue


def _job(store: JobStore, total: int, kind: JobKind = JobKind.UPLOAD) -> tuple[str, float]:
    job_id = store.create(kind, "c", [{"kind": "upload", "name": f"{i}.jpg"} for i in range(total)])
    store.mark_running(job_id)
    return job_id, float(store.redis.hget(store.keys(job_id)[0], "progress_at") or 0)


def _sent(queue: InMemoryJobQueue, job_id: str) -> list[tuple[TaskKind, int, int]]:
    return [(kind, p.start, p.end) for kind, p in queue.sent if p.job_id == job_id]


def test_runs_split_at_gaps_and_at_the_chunk_size() -> None:
    assert runs([0, 1, 2, 3, 4, 7, 9, 10], 3) == [(0, 3), (3, 5), (7, 8), (9, 11)]
    assert runs([], 3) == []


def test_a_stalled_job_gets_its_items_without_outcome_enqueued_again(client: redis.Redis) -> None:
    sweeper, queue = _sweeper(client)
    job_id, at = _job(sweeper.jobs, 10)
    for index in (0, 1, 2, 5):
        sweeper.jobs.record(job_id, index, Outcome.INDEXED)
    progress = float(client.hget(sweeper.jobs.keys(job_id)[0], "progress_at") or 0)
    assert progress >= at  # a new outcome is progress

    assert job_id not in sweeper.sweep(now=progress + STALL_S - 1).requeued  # not stalled yet
    report = sweeper.sweep(now=progress + STALL_S)
    assert report.requeued[job_id] == 6
    chunk = TaskKind.INGEST_CHUNK
    assert _sent(queue, job_id) == [(chunk, 3, 5), (chunk, 6, 10)]
    # the sweep counts as a sign of life: the next one comes a whole stall bound later
    assert job_id not in sweeper.sweep(now=progress + STALL_S + 1).requeued


def test_nothing_is_swept_while_the_queue_holds_work_or_the_job_is_paused(client: redis.Redis) -> None:
    busy, queue = _sweeper(client, backlog=3)
    job_id, at = _job(busy.jobs, 3)
    assert busy.sweep(now=at + 10 * STALL_S).requeued == {}
    assert not _sent(queue, job_id)

    idle, queue = _sweeper(client)
    assert pause(idle.jobs, job_id, "vector store has no quorum: test", for_s=10 * STALL_S)
    assert idle.jobs.get(job_id).paused == "vector store has no quorum: test"
    assert job_id not in idle.sweep(now=at + 2 * STALL_S).requeued
    idle.jobs.record(job_id, 0, Outcome.INDEXED)  # progress ends the pause
    assert idle.jobs.get(job_id).paused is None


def test_a_job_that_never_progresses_ends_failed_with_the_reason(client: redis.Redis) -> None:
    sweeper, queue = _sweeper(client)
    job_id, _ = _job(sweeper.jobs, 5)
    sweeper.jobs.record(job_id, 4, Outcome.INDEXED)
    now = float(client.hget(sweeper.jobs.keys(job_id)[0], "progress_at") or 0)
    for sweep in (1, 2):
        now += STALL_S
        assert sweeper.sweep(now=now).requeued[job_id] == 4, sweep
    now += STALL_S
    assert job_id in sweeper.sweep(now=now).failed
    report = sweeper.jobs.get(job_id)
    assert report.state is JobState.FAILED
    assert report.failure and "no worker could process them" in report.failure
    assert (report.done, report.failed, report.processed) == (1, 4, 5)
    assert [e.file for e in report.errors] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert len(_sent(queue, job_id)) == 2
    assert job_id not in sweeper.sweep(now=now + 10 * STALL_S).requeued  # out of the open set


def test_a_held_re_embed_gets_one_chunk_to_run_its_final_step(client: redis.Redis) -> None:
    sweeper, queue = _sweeper(client)
    job_id, at = _job(sweeper.jobs, 2, kind=JobKind.REEMBED)
    for index in (0, 1):
        sweeper.jobs.record(job_id, index, Outcome.INDEXED)
    assert sweeper.jobs.state(job_id) is JobState.RUNNING  # held for its step
    sweeper.sweep(now=at + 2 * STALL_S)
    assert _sent(queue, job_id) == [(TaskKind.INGEST_CHUNK, 1, 2)]
