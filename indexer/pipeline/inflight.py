"""A byte budget for the raw bytes of a chunk's items in flight (INGEST_MAX_BYTES_IN_FLIGHT).

Items keep their raw bytes from the read stage until they are stored (the original goes to the blob
store) or fail. The read stage takes an item's bytes from the budget before it reads the next one, and
waits while the budget is spent; the bytes come back when the item leaves the pipeline. So the raw bytes
held by one chunk stay under the budget, plus one item at most: an item larger than the whole budget
still runs, alone.
"""

from __future__ import annotations

import threading


class ByteBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    def fits(self, n: int) -> bool:
        """Whether ``n`` more bytes fit now (an item larger than the budget fits when nothing is held)."""
        with self._cond:
            return self.used == 0 or self.used + n <= self.limit

    def take(self, n: int, timeout_s: float) -> bool:
        """Take ``n`` bytes, waiting up to ``timeout_s`` for them to fit; False when they did not."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.used == 0 or self.used + n <= self.limit, timeout_s):
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def give(self, n: int) -> None:
        with self._cond:
            self.used = max(0, self.used - n)
            self._cond.notify_all()
