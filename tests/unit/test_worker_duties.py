"""The worker's periodic duties (workers/sweeper.py): each at its own interval, in one thread, a failed
round skipped, until stopped. Time is a fake clock that the stop event's waits advance."""

from __future__ import annotations

import pytest

from workers.sweeper import Duty, run_duties


class FakeTime:
    """`wait(t)` advances the clock by t; the stop is set once the clock reaches `until`."""

    def __init__(self, until: float) -> None:
        self.now = 0.0
        self.until = until
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        if self.now + (timeout or 0.0) > self.until:
            return True
        self.now += timeout or 0.0
        return False


def test_each_duty_runs_at_its_own_interval_in_one_thread() -> None:
    time = FakeTime(until=10.0)
    ran: list[tuple[str, float]] = []
    duties = [
        Duty("job sweep", 5.0, lambda: ran.append(("job", time.now))),
        Duty("open-job sweep", 2.0, lambda: ran.append(("open", time.now))),
    ]
    run_duties(duties, time, time.clock)
    assert [t for name, t in ran if name == "job"] == [5.0, 10.0]
    assert [t for name, t in ran if name == "open"] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert all(w >= 0 for w in time.waits)


def test_a_failed_round_is_skipped_and_the_duty_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime(until=3.0)
    calls: list[float] = []

    def flaky() -> None:
        calls.append(time.now)
        if len(calls) == 1:
            raise ConnectionError("redis away")

    run_duties([Duty("open-job sweep", 1.0, flaky)], time, time.clock)
    assert calls == [1.0, 2.0, 3.0]
    assert "open-job sweep: this round was skipped: ConnectionError: redis away" in caplog.text
