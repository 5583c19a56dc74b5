"""The worker's heartbeat: a thread in the worker's main process writes indexer.jobs.heartbeat's key every
WORKER_HEARTBEAT_S from the moment the worker is ready to consume, and deletes it on a clean stop. The
API's /health reads those keys instead of pinging the workers over the broker (which made every /health
wait a whole second)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import redis
from celery import Celery, signals

from indexer.jobs import heartbeat
from indexer.settings import Settings
from workers.celery_factory import DEFAULT_REDIS_URL

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self.interval_s = settings.worker_heartbeat_s
        self.client = redis.Redis.from_url(
            settings.redis_url or DEFAULT_REDIS_URL, socket_timeout=5, socket_connect_timeout=2
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipsearch-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        try:
            heartbeat.beat(self.client, self.name, self.interval_s, {"pid": os.getpid()})
        except redis.RedisError as exc:
            log.warning("heartbeat: cannot write to redis: %s", exc)

    def _run(self) -> None:
        self._beat()
        while not self._stop.wait(self.interval_s):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
        try:
            heartbeat.forget(self.client, self.name)
        except redis.RedisError as exc:
            log.warning("heartbeat: cannot remove the key: %s", exc)


_state: dict[str, Any] = {"beat": None, "settings": None}


def _on_ready(sender: Any = None, **_: Any) -> None:
    if _state["beat"] is not None:
        return
    settings: Settings = _state["settings"] or Settings()
    name = str(getattr(sender, "hostname", None) or f"worker-{os.getpid()}")
    beat = Heartbeat(settings, name)
    beat.start()
    _state["beat"] = beat


def _on_shutdown(**_: Any) -> None:
    beat: Heartbeat | None = _state["beat"]
    if beat is not None:
        beat.stop()
        _state["beat"] = None


def install_heartbeat(app: Celery, settings: Settings) -> None:
    """Hooks for the worker process (workers/app.py): beat from `worker_ready` to `worker_shutdown`."""
    _state["settings"] = settings
    signals.worker_ready.connect(_on_ready, weak=False)
    signals.worker_shutdown.connect(_on_shutdown, weak=False)
