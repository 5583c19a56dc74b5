"""`clipsearch up`'s supervisor: restart what dies, with backoff, and give up on what keeps dying.

Like systemd's `Restart=always` with `StartLimitBurst`/`StartLimitIntervalSec`, or a Kubernetes pod's
CrashLoopBackOff: a part that exits (whatever the exit code) is started again on the same ports and
data after a delay that doubles with each death inside the window (SUPERVISOR_BACKOFF_S,
SUPERVISOR_BACKOFF_MAX_S). One that died more than SUPERVISOR_MAX_RESTARTS times within
SUPERVISOR_RESTART_WINDOW_S is given up: left down, said loudly, and reported as degraded in /health,
while the others keep running. The survivors are never touched; only Ctrl-C or SIGTERM stops the stack.

No round waits for a part to come up: a restart launches the process and the next rounds probe it
(each probe has a timeout of a few seconds), so one part coming back never delays noticing another one's
death.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from clipsearch.processes import ManagedProcess
from clipsearch.stack import LocalStack
from clipsearch.weaviate_server import WeaviateCluster, WeaviateServer
from indexer.settings import Settings
from indexer.supervision import PartState, write_status


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float
    backoff_max_s: float
    max_restarts: int
    window_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(
            backoff_s=settings.supervisor_backoff_s,
            backoff_max_s=settings.supervisor_backoff_max_s,
            max_restarts=settings.supervisor_max_restarts,
            window_s=settings.supervisor_restart_window_s,
        )

    def delay(self, deaths: int) -> float:
        """Seconds before the restart that follows the `deaths`-th death inside the window: 1, 2, 4 ...
        times the base, capped."""
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, deaths - 1)))

    def gives_up(self, deaths: int) -> bool:
        return deaths > self.max_restarts


@dataclass
class Part:
    """One supervised process. ``process`` gives the current one (a worker's is replaced on restart);
    ``relaunch`` starts it again on the same ports and data without waiting; ``ready`` probes it
    (quickly: it runs inside the supervisor's round)."""

    name: str
    process: Callable[[], ManagedProcess | None]
    relaunch: Callable[[], None]
    ready: Callable[[], bool]


@dataclass
class _Record:
    state: PartState = PartState.RUNNING
    restarts: int = 0
    deaths: deque[float] = field(default_factory=deque)
    next_start: float = 0.0
    since: float = 0.0
    last_exit_code: int | None = None
    last_error: str | None = None


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


class Supervisor:
    def __init__(
        self,
        parts: list[Part],
        policy: RestartPolicy,
        status_file: Path | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.parts = parts
        self.policy = policy
        self.status_file = status_file
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.records = {part.name: _Record() for part in parts}
        self._publish_failed = False

    # -- one round -------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Look at every part once: notice deaths, restart those whose delay has passed, probe those
        coming back. ``now`` is a monotonic clock reading."""
        for part in self.parts:
            record = self.records[part.name]
            if record.state is PartState.GIVEN_UP:
                continue
            if record.state is PartState.BACKOFF:
                if now >= record.next_start:
                    self._restart(part, record, now)
                continue
            proc = part.process()
            if proc is None or not proc.alive():
                code = proc.process.returncode if proc is not None and proc.process is not None else None
                if proc is not None:
                    proc.reap()
                self._died(part, record, now, code, None)
            elif record.state is PartState.STARTING and self._probe(part):
                record.state = PartState.RUNNING
                self._say(f"{part.name} is back after {now - record.since:.1f} s (restart {record.restarts})")
                record.since = now

    def _probe(self, part: Part) -> bool:
        with contextlib.suppress(Exception):  # any failure of the probe means "not yet"
            return bool(part.ready())
        return False

    def _restart(self, part: Part, record: _Record, now: float) -> None:
        record.restarts += 1
        self._say(f"restarting {part.name} (restart {record.restarts})")
        try:
            part.relaunch()
        except Exception as exc:  # a restart that cannot even launch (a port taken, a binary gone) is a death
            self._died(part, record, now, None, f"{exc.__class__.__name__}: {exc}")
            return
        record.state = PartState.STARTING
        record.since = now

    def _died(self, part: Part, record: _Record, now: float, code: int | None, error: str | None) -> None:
        record.last_exit_code = code
        record.last_error = error
        record.deaths.append(now)
        while record.deaths and record.deaths[0] <= now - self.policy.window_s:
            record.deaths.popleft()
        deaths = len(record.deaths)
        how = error or f"exit code {code}"
        proc = part.process()
        log = f"; see {proc.log_path}" if proc is not None else ""
        record.since = now
        if self.policy.gives_up(deaths):
            record.state = PartState.GIVEN_UP
            banner = "!" * 100
            self._say(
                f"{banner}\nGIVING UP on {part.name}: it died {deaths} times within "
                f"{self.policy.window_s:.0f} s (last: {how}){log}.\nIt stays down; the rest of the stack "
                f"keeps running DEGRADED. Fix the cause and restart `clipsearch up`.\n{banner}",
                self.err,
            )
            return
        delay = self.policy.delay(deaths)
        record.state = PartState.BACKOFF
        record.next_start = now + delay
        self._say(
            f"{part.name} died ({how}); restarting it in {delay:.1f} s "
            f"({deaths} death(s) within {self.policy.window_s:.0f} s; "
            f"given up at {self.policy.max_restarts + 1}){log}",
            self.err,
        )

    def _say(self, line: str, stream: TextIO | None = None) -> None:
        print(f"[{_stamp()}] supervisor: {line}", file=stream or self.out, flush=True)

    # -- what it publishes -------------------------------------------------------------------------
    def report(self, now: float, wall: float) -> dict[str, Any]:
        """The state of every part, for /health (``now``: monotonic; ``wall``: time.time())."""
        parts: dict[str, dict[str, Any]] = {}
        pids: dict[str, int | None] = {}
        for part in self.parts:
            record = self.records[part.name]
            entry: dict[str, Any] = {
                "state": str(record.state),
                "restarts": record.restarts,
                "deaths_in_window": len(record.deaths),
                "for_s": round(max(0.0, now - record.since), 1),
                "last_exit_code": record.last_exit_code,
            }
            if record.last_error:
                entry["last_error"] = record.last_error
            if record.state is PartState.BACKOFF:
                entry["restart_in_s"] = round(max(0.0, record.next_start - now), 1)
            parts[part.name] = entry
            proc = part.process()
            pids[part.name] = proc.pid if proc is not None and proc.alive() else None
        return {
            "updated_at": wall,
            "restarts": sum(r.restarts for r in self.records.values()),
            "given_up": [name for name, r in self.records.items() if r.state is PartState.GIVEN_UP],
            "policy": {
                "backoff_s": self.policy.backoff_s,
                "backoff_max_s": self.policy.backoff_max_s,
                "max_restarts": self.policy.max_restarts,
                "window_s": self.policy.window_s,
            },
            "parts": parts,
            "pids": pids,
        }

    def publish(self) -> None:
        """Write the report for /health; a failed write (a full disk) is said once, never fatal."""
        if self.status_file is None:
            return
        try:
            write_status(self.status_file, self.report(time.monotonic(), time.time()))
            self._publish_failed = False
        except OSError as exc:
            if not self._publish_failed:
                self._say(f"cannot write {self.status_file}: {exc}; /health shows a stale state", self.err)
            self._publish_failed = True


def stack_parts(stack: LocalStack) -> list[Part]:
    """Every process the stack started, as supervised parts: each restarts on its own ports and data
    (Redis and the object store with the credentials every child already holds)."""
    parts: list[Part] = []
    if stack.redis is not None:
        redis = stack.redis
        parts.append(Part("redis", lambda: redis.process, redis.relaunch, redis.ready))
    if stack.object_store is not None:
        store = stack.object_store
        parts.append(Part("object-store", lambda: store.process, store.relaunch, store.ready))
    nodes = stack.weaviate.nodes if isinstance(stack.weaviate, WeaviateCluster) else [stack.weaviate]
    parts.extend(_weaviate_part(node) for node in nodes if node is not None)
    parts.extend(_worker_part(stack, index) for index in range(len(stack.workers)))
    if stack.api is not None:
        parts.append(Part("api", lambda: stack.api, stack.launch_api, stack.api_answers))
    return parts


def _weaviate_part(node: WeaviateServer) -> Part:
    # Its ports may linger in TIME_WAIT; Weaviate binds with SO_REUSEADDR, so they are usable as they are.
    return Part(node.name, lambda: node.process, lambda: node.launch(check_ports=False), node.ready)


def _worker_part(stack: LocalStack, index: int) -> Part:
    def relaunch() -> None:  # a fresh Celery name: the dead one's heartbeat simply expires
        stack.workers[index] = stack.launch_worker()

    def current() -> ManagedProcess:
        return stack.workers[index]

    return Part(f"worker-{index}", current, relaunch, lambda: stack.worker_answers(current()))
