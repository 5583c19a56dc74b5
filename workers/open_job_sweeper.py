"""The open-job sweep's thread (indexer.services.open_jobs): in each worker's main process, from
`worker_ready` to `worker_shutdown`, a tick every OPEN_JOB_SWEEP_S; the worker that takes the tick's
Redis lock expires the idle open upload jobs and removes their staged files."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import redis
from celery import Celery, signals

from indexer.services.open_jobs import sweep_if_leader
from indexer.settings import Settings
from workers.celery_factory import DEFAULT_REDIS_URL

log = logging.getLogger(__name__)

_stop = threading.Event()
_threads: list[threading.Thread] = []


def _loop(settings: Settings, name: str) -> None:
    client = redis.Redis.from_url(
        settings.redis_url or DEFAULT_REDIS_URL, socket_timeout=5, socket_connect_timeout=2
    )
    while not _stop.wait(settings.open_job_sweep_s):
        try:
            sweep_if_leader(client, settings, name, time.time())
        except Exception:  # a sweep that failed (Redis down, the store unreachable) is retried next tick
            log.exception("open-job sweep failed")


def install_open_job_sweeper(app: Celery, settings: Settings) -> None:
    """Hooks for the worker process (workers/app.py)."""

    def ready(sender: Any = None, **_: Any) -> None:
        if _threads:
            return
        name = f"{getattr(sender, 'hostname', None) or 'worker'}:{os.getpid()}"
        thread = threading.Thread(target=_loop, args=(settings, name), name="clipsearch-sweep", daemon=True)
        thread.start()
        _threads.append(thread)

    def shutdown(**_: Any) -> None:
        _stop.set()

    signals.worker_ready.connect(ready, weak=False)
    signals.worker_shutdown.connect(shutdown, weak=False)
