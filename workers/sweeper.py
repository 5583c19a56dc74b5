"""The worker's periodic duties, in one thread of each worker's main process from `worker_ready` to
`worker_shutdown`. No Celery beat: whichever workers are alive tick, and a Redis lock per duty makes one
of them do the work:

- the job sweep (indexer.services.recovery.Sweeper), every JOB_SWEEP_INTERVAL_S, by the worker that holds
  the sweeper's lock (a dead one's lock expires after two intervals): a stalled chunk is enqueued again;
- the open-job sweep (indexer.services.open_jobs), every OPEN_JOB_SWEEP_S, by the worker that takes the
  tick's lock: idle open upload jobs expire and their staged files go.

A duty that fails (Redis or the broker away) is skipped for that round and runs again at its next tick.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from celery import Celery, signals

from indexer.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duty:
    name: str
    every_s: float
    run: Callable[[], object]


class Waiter(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...


def run_duties(duties: list[Duty], stop: Waiter, clock: Callable[[], float] = time.monotonic) -> None:
    """Run each duty every `every_s` (counted from the end of its last run) until `stop` is set."""
    due = [clock() + duty.every_s for duty in duties]
    while not stop.wait(max(0.0, min(due) - clock())):
        for i, duty in enumerate(duties):
            if due[i] > clock():
                continue
            try:
                duty.run()
            except Exception as exc:  # an outage, or a bug in one round: the next round tries again
                log.warning("%s: this round was skipped: %s: %s", duty.name, exc.__class__.__name__, exc)
            due[i] = clock() + duty.every_s


class SweeperThread:
    def __init__(self, app: Celery, settings: Settings, name: str) -> None:
        # Imported here, at `worker_ready`: the recovery service's imports load prometheus_client, which
        # must come after workers/observability.py pointed PROMETHEUS_MULTIPROC_DIR at this worker's
        # directory (at `import_modules`), or the pool processes' counters are never summed.
        from indexer.services.backends import DEFAULT_REDIS_URL
        from indexer.services.open_jobs import sweep_if_leader
        from indexer.services.recovery import Sweeper, lead_round
        from workers.queue import CeleryJobQueue

        client = redis.Redis.from_url(
            settings.redis_url or DEFAULT_REDIS_URL, socket_timeout=10, socket_connect_timeout=2
        )
        queue = CeleryJobQueue(app, settings)
        self.sweeper = Sweeper.over(client, queue, queue.backlog, settings)
        self.name = name
        self.duties = [
            Duty("job sweep", settings.job_sweep_interval_s, lambda: lead_round(self.sweeper, name)),
            Duty(
                "open-job sweep",
                settings.open_job_sweep_s,
                lambda: sweep_if_leader(client, settings, name, time.time()),
            ),
        ]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipsearch-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from indexer.services.recovery import step_down

        run_duties(self.duties, self._stop)
        step_down(self.sweeper, self.name)

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
    """Hooks for the worker process (workers/app.py): the duties run from `worker_ready` to
    `worker_shutdown`."""
    _state["app"], _state["settings"] = app, settings
    signals.worker_ready.connect(_on_ready, weak=False)
    signals.worker_shutdown.connect(_on_shutdown, weak=False)
