"""Stopping the local stack's children: a group is signalled at once and awaited against one deadline."""

from __future__ import annotations

import time
from pathlib import Path

from clipsearch.processes import ManagedProcess, stop_all


def _stubborn(tmp_path: Path, name: str) -> ManagedProcess:
    """A child that ignores SIGTERM (as a server busy flushing would), so only SIGKILL ends it."""
    argv = ["bash", "-c", "trap '' TERM; echo ready; sleep 60"]
    proc = ManagedProcess(name, argv, tmp_path / f"{name}.log")
    proc.start()
    deadline = time.monotonic() + 10
    while "ready" not in proc.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_stop_all_takes_one_timeout_for_the_group_and_leaves_nothing_running(tmp_path: Path) -> None:
    procs = [_stubborn(tmp_path, f"p{i}") for i in range(3)]
    popens = [p.process for p in procs]
    started = time.monotonic()
    stop_all(procs, timeout_s=1.0)
    took = time.monotonic() - started
    assert took < 2.5, took  # one deadline for the three, not one second each
    assert all(p is not None and p.poll() is not None for p in popens)
    assert all(p.process is None for p in procs)


def test_stop_all_returns_at_once_for_children_that_obey(tmp_path: Path) -> None:
    procs = [ManagedProcess(f"q{i}", ["sleep", "60"], tmp_path / f"q{i}.log") for i in range(3)]
    for proc in procs:
        proc.start()
    started = time.monotonic()
    stop_all(procs, timeout_s=20.0)
    assert time.monotonic() - started < 2.0
    assert all(p.process is None for p in procs)
