"""The Celery implementation of the JobQueue port (indexer/services/queue.py)."""

from __future__ import annotations

from celery import Celery

from indexer.services.queue import QUEUE, ChunkPayload, TaskKind, time_limits
from indexer.settings import Settings


class CeleryJobQueue:
    def __init__(self, celery: Celery, settings: Settings | None = None) -> None:
        self.celery = celery
        self.settings = settings or Settings()

    def enqueue(self, kind: TaskKind, payload: ChunkPayload, delay_s: float = 0.0) -> None:
        """Send the task; ``delay_s``: not to run before that many seconds from now."""
        options: dict[str, float] = {}
        if kind is TaskKind.INGEST_CHUNK:  # decoders and ONNX: limits scaled with the chunk's size
            limits = time_limits(self.settings, payload.end - payload.start)
            options = {"soft_time_limit": limits.soft_s, "time_limit": limits.hard_s}
        if delay_s > 0:
            options["countdown"] = delay_s
        self.celery.send_task(kind.value, args=payload.args(), queue=QUEUE, **options)

    def backlog(self) -> int:
        """Messages in the queue that no worker has taken yet (the Redis list kombu keeps per queue)."""
        with self.celery.connection_for_read() as conn:
            return int(conn.default_channel.client.llen(QUEUE))
