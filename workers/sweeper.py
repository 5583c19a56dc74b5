"""The sweeper's loop (indexer.services.recovery.Sweeper): a thread in each worker's main process, of
which the one that holds the Redis lock sweeps every JOB_SWEEP_INTERVAL_S. No Celery beat: whichever
worker is alive sweeps, and a dead one's lock expires after two intervals."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import redis
from celery import Celery, signals

from indexer.settings import Settings

log = logging.getLogger(__name__)


class SweeperThread:
    def __init__(self, app: Celery, settings: Settings, name: str) -> None:
        # Imported here, at `worker_ready`: the recovery service's imports load prometheus_client, which
        # must come after workers/observability.py pointed PROMETHEUS_MULTIPROC_DIR at this worker's
        # directory (at `import_modules`), or the pool processes' counters are never summed.
        from indexer.services.backends import DEFAULT_REDIS_URL
        from indexer.services.recovery import Sweeper
        from workers.queue import CeleryJobQueue

        client = redis.Redis.from_url(
            settings.redis_url or DEFAULT_REDIS_URL, socket_timeout=10, socket_connect_timeout=2
        )
        queue = CeleryJobQueue(app, settings)
        self.sweeper = Sweeper.over(client, queue, queue.backlog, settings)
        self.name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipsearch-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from indexer.services.recovery import lead_sweeps

        lead_sweeps(self.sweeper, self.name, self._stop)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


_state: dict[str, Any] = {"thread": None, "app": None, "settings": None}


def _on_ready(sender: Any = None, **_: Any) -> None:
    if _state["thread"] is not None:
        return
    name = f"{getattr(sender, 'hostname', None) or 'worker'}:{os.getpid()}"
    thread = SweeperThread(_state["app"], _state["settings"] or Settings(), name)
    thread.start()
    _state["thread"] = thread


def _on_shutdown(**_: Any) -> None:
    thread: SweeperThread | None = _state["thread"]
    if thread is not None:
        thread.stop()
        _state["thread"] = None


def install_sweeper(app: Celery, settings: Settings) -> None:
    """Hooks for the worker process (workers/app.py): sweep from `worker_ready` to `worker_shutdown`."""
    _state["app"], _state["settings"] = app, settings
    signals.worker_ready.connect(_on_ready, weak=False)
    signals.worker_shutdown.connect(_on_shutdown, weak=False)
