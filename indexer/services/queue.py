"""The one port through which use cases enqueue work: task names and queues live here and nowhere else.

The Celery implementation is `workers.queue.CeleryJobQueue`; unit tests use `InMemoryJobQueue`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from indexer.settings import Settings

QUEUE = "clipsearch"  # the one Celery queue every task goes to


class TaskKind(StrEnum):
    """Every task the workers run, by its registered name."""

    INGEST_CHUNK = "clipsearch.ingest_chunk"  # ingest and re-embed: items [start, end) of a job
    LABEL_CHUNK = "clipsearch.label_chunk"  # bulk labelling: images [start, end) of a job
    SYNC_FOLDER = "clipsearch.sync_folder"  # a folder sync's plan: hash, compare, queue its ingest chunks
    PING = "clipsearch.ping"


class ChunkPayload(BaseModel):
    """A task's arguments: a job and a range of its planned items (ids, never image bytes)."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)

    def args(self) -> list[object]:
        return [self.job_id, self.start, self.end]


class TimeLimits(BaseModel):
    """A task's soft and hard time limits in seconds (Celery's soft_time_limit and time_limit)."""

    soft_s: float
    hard_s: float


def time_limits(settings: Settings, items: int) -> TimeLimits:
    """Limits that scale with the task's size: soft = base + per_item * items; the hard limit leaves the
    soft one's handler max(10 s, soft / 4) to record the open items as failed."""
    soft = settings.task_time_limit_base_s + settings.task_time_limit_per_item_s * max(1, items)
    return TimeLimits(soft_s=soft, hard_s=soft + max(10.0, soft / 4))


def visibility_timeout_s(settings: Settings) -> int:
    """The broker's visibility timeout: TASK_VISIBILITY_TIMEOUT_S, raised above the hard limit of the
    largest ingest task (plus a margin), so that a task still running is never re-delivered."""
    hard = time_limits(settings, settings.ingest_chunk_size).hard_s
    return max(settings.task_visibility_timeout_s, int(hard) + 30)


class JobQueue(Protocol):
    def enqueue(self, kind: TaskKind, payload: ChunkPayload) -> None: ...


@dataclass
class InMemoryJobQueue:
    """A JobQueue that keeps what it was given, for unit tests and in-process runs."""

    sent: list[tuple[TaskKind, ChunkPayload]] = field(default_factory=list)

    def enqueue(self, kind: TaskKind, payload: ChunkPayload) -> None:
        self.sent.append((kind, payload))
