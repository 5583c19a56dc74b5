"""The supervisor's rules over real child processes, with the clock passed in: backoff, the window, giving
up, and what it publishes for /health."""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipsearch.processes import ManagedProcess
from clipsearch.supervisor import Part, RestartPolicy, Supervisor
from indexer.supervision import STALE_AFTER_S, PartState, health_view, read_status, status_path

POLICY = RestartPolicy(backoff_s=1.0, backoff_max_s=5.0, max_restarts=2, window_s=60.0)


class Child:
    """One supervised test process: `sleep` (stays up) or `true` (dies at once) on each (re)launch."""

    def __init__(self, tmp_path: Path, name: str, argv: list[str]) -> None:
        self.tmp_path, self.name, self.argv = tmp_path, name, argv
        self.launches = 0
        self.answers = True
        self.fail_launch = False
        self.proc = self._new()
        self.proc.start()

    def _new(self) -> ManagedProcess:
        return ManagedProcess(self.name, self.argv, self.tmp_path / f"{self.name}.log")

    def relaunch(self) -> None:
        if self.fail_launch:
            raise OSError("port taken")
        self.launches += 1
        self.proc = self._new()
        self.proc.start()

    def kill(self) -> None:
        assert self.proc.process is not None
        self.proc.process.send_signal(signal.SIGKILL)
        self.proc.process.wait(10)

    def part(self) -> Part:
        return Part(self.name, lambda: self.proc, self.relaunch, lambda: self.answers)


@pytest.fixture()
def children(tmp_path: Path) -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        child.proc.stop(timeout_s=5)


def _child(tmp_path: Path, children: list[Child], name: str) -> Child:
    child = Child(tmp_path, name, ["sleep", "60"])
    children.append(child)
    return child


def _supervisor(*parts: Part, status: Path | None = None) -> tuple[Supervisor, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Supervisor(list(parts), POLICY, status, out=out, err=err), out, err


def test_backoff_doubles_per_death_in_the_window_and_is_capped() -> None:
    assert [POLICY.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert not POLICY.gives_up(2) and POLICY.gives_up(3)


def test_a_dead_part_is_restarted_after_its_delay_and_the_others_are_left_alone(
    tmp_path: Path, children: list[Child]
) -> None:
    victim, other = _child(tmp_path, children, "redis"), _child(tmp_path, children, "api")
    other_pid = other.proc.pid
    supervisor, out, err = _supervisor(victim.part(), other.part())
    supervisor.tick(0.0)
    assert supervisor.records["redis"].state is PartState.RUNNING
    victim.kill()
    victim.answers = False
    supervisor.tick(10.0)
    record = supervisor.records["redis"]
    assert record.state is PartState.BACKOFF and record.last_exit_code == -signal.SIGKILL
    assert "redis died (exit code -9); restarting it in 1.0 s" in err.getvalue()
    supervisor.tick(10.9)  # before its delay: not yet
    assert victim.launches == 0 and record.state is PartState.BACKOFF
    supervisor.tick(11.0)
    assert victim.launches == 1 and victim.proc.alive()
    assert record.state is PartState.STARTING and record.restarts == 1
    supervisor.tick(11.5)  # alive but not answering yet
    assert record.state is PartState.STARTING
    victim.answers = True
    supervisor.tick(12.0)
    assert record.state is PartState.RUNNING
    assert "redis is back after 1.0 s (restart 1)" in out.getvalue()
    assert other.proc.pid == other_pid and other.launches == 0
    assert supervisor.records["api"].state is PartState.RUNNING and supervisor.records["api"].restarts == 0


def test_a_part_that_keeps_dying_is_given_up_loudly_and_left_down(
    tmp_path: Path, children: list[Child]
) -> None:
    victim, other = _child(tmp_path, children, "object-store"), _child(tmp_path, children, "api")
    supervisor, _, err = _supervisor(victim.part(), other.part())
    now = 0.0
    delays = []
    for _ in range(POLICY.max_restarts):
        victim.kill()
        supervisor.tick(now)
        record = supervisor.records["object-store"]
        assert record.state is PartState.BACKOFF
        delays.append(record.next_start - now)
        now = record.next_start
        supervisor.tick(now)
        assert record.state is PartState.STARTING
        supervisor.tick(now)
        assert record.state is PartState.RUNNING
    assert delays == [1.0, 2.0]
    victim.kill()
    supervisor.tick(now + 1)
    assert supervisor.records["object-store"].state is PartState.GIVEN_UP
    assert "GIVING UP on object-store: it died 3 times within 60 s" in err.getvalue()
    launches = victim.launches
    supervisor.tick(now + 1000)
    assert victim.launches == launches  # left down for good
    report = supervisor.report(now + 1000, wall=5000.0)
    assert report["given_up"] == ["object-store"] and report["restarts"] == POLICY.max_restarts
    assert report["parts"]["object-store"]["state"] == "given_up"
    assert report["parts"]["api"] == {
        "state": "running",
        "restarts": 0,
        "deaths_in_window": 0,
        "for_s": now + 1000,
        "last_exit_code": None,
    }
    assert supervisor.records["api"].state is PartState.RUNNING and other.proc.alive()


def test_deaths_older_than_the_window_are_forgotten(tmp_path: Path, children: list[Child]) -> None:
    victim = _child(tmp_path, children, "weaviate")
    supervisor, _, _ = _supervisor(victim.part())
    record = supervisor.records["weaviate"]
    for now in (0.0, 100.0, 200.0, 300.0):  # one death every 100 s, window 60 s: never given up
        victim.kill()
        supervisor.tick(now)
        assert record.state is PartState.BACKOFF and record.next_start == now + POLICY.backoff_s
        supervisor.tick(record.next_start)
        supervisor.tick(record.next_start)
        assert record.state is PartState.RUNNING
    assert record.restarts == 4


def test_a_restart_that_cannot_launch_counts_as_a_death(tmp_path: Path, children: list[Child]) -> None:
    victim = _child(tmp_path, children, "api")
    supervisor, _, err = _supervisor(victim.part())
    victim.kill()
    victim.fail_launch = True
    supervisor.tick(0.0)
    supervisor.tick(1.0)
    record = supervisor.records["api"]
    assert record.state is PartState.BACKOFF and record.last_error == "OSError: port taken"
    assert record.next_start == 1.0 + 2.0  # the second death in the window doubles the delay
    assert "api died (OSError: port taken)" in err.getvalue()


def test_a_part_dying_during_its_start_is_noticed(tmp_path: Path, children: list[Child]) -> None:
    victim = _child(tmp_path, children, "worker-0")
    supervisor, _, _ = _supervisor(victim.part())
    victim.kill()
    victim.argv = ["true"]  # the relaunched process exits at once
    supervisor.tick(0.0)
    supervisor.tick(1.0)
    assert victim.proc.process is not None
    victim.proc.process.wait(10)
    supervisor.tick(1.5)
    record = supervisor.records["worker-0"]
    assert record.state is PartState.BACKOFF and record.last_exit_code == 0 and len(record.deaths) == 2


def test_published_state_hides_pids_and_turns_stale(tmp_path: Path, children: list[Child]) -> None:
    child = _child(tmp_path, children, "redis")
    path = status_path(tmp_path)
    supervisor, _, _ = _supervisor(child.part(), status=path)
    supervisor.publish()
    published = read_status(path)
    assert published is not None and published["pids"] == {"redis": child.proc.pid}
    view = health_view(published, published["updated_at"] + 1)
    assert "pids" not in view and view["stale"] is False and view["degraded"] is False
    assert view["parts"]["redis"]["state"] == "running"
    published["given_up"] = ["redis"]
    assert health_view(published, published["updated_at"] + 1)["degraded"] is True
    old = health_view(published, published["updated_at"] + STALE_AFTER_S + 1)
    assert old["stale"] is True and old["degraded"] is False  # its supervisor is gone: nothing to trust
    assert read_status(tmp_path / "absent.json") is None
    path.write_text("{not json")
    assert "unreadable" in (read_status(path) or {})["error"]
    assert json.loads(json.dumps(view)) == view
