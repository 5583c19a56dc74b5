"""When a watched folder is quiet enough to sync: a burst of file-system events (thousands of files
copied in) becomes one sync run, never one per event."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Debouncer:
    """``touch`` on each event (any thread, O(1)); ``take`` says when to run: once ``quiet_s`` passed with
    no event, or ``max_wait_s`` after the first event of a burst that never pauses."""

    quiet_s: float = 2.0
    max_wait_s: float = 30.0
    _first: float | None = None
    _last: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def touch(self, now: float) -> None:
        with self._lock:
            if self._first is None:
                self._first = now
            self._last = now

    def take(self, now: float) -> bool:
        """True once per burst, when it is time to run (events after this start a new burst)."""
        with self._lock:
            if self._first is None:
                return False
            if now - self._last < self.quiet_s and now - self._first < self.max_wait_s:
                return False
            self._first = None
            return True
