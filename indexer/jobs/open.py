"""Open upload jobs: a job that takes more items after it starts (a page uploading a folder in many
requests), and completes only once its client closes it.

`JobStore.create(..., open_ended=True)` records the job with the field `open` = "1" and no items; the
record script of indexer/jobs/store.py does not complete an open job however many outcomes it has. `append`
adds items atomically (refused once the job is closed, cancelled or gone) and returns the new total,
so the caller enqueues chunks over the new index range. `close` clears the flag and completes the job
at once if every item already has an outcome.
"""

from __future__ import annotations

import json
import time
from typing import Any

from indexer.errors import Conflict, NotFound
from indexer.jobs.store import _FINISH_LUA, ACTIVE, ENDED, INDEX, PREFIX, JobStore

# KEYS[1]: job hash, KEYS[2]: items list. ARGV: the items' JSON. Returns the new total, -1 when the job
# is not open (closed, or never was), -2 when it is not active (cancelled, failed), -3 when it is gone.
_APPEND = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -3 end
if state ~= 'queued' and state ~= 'running' then return -2 end
if redis.call('HGET', KEYS[1], 'open') ~= '1' then return -1 end
local n = redis.call('RPUSH', KEYS[2], unpack(ARGV))
redis.call('HSET', KEYS[1], 'total', n)
return n
"""

# KEYS: as _FINISH_LUA. ARGV: now, ttl, PREFIX, ENDED. Returns the state before (false: no job).
_CLOSE = (
    _FINISH_LUA
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
redis.call('HSET', KEYS[1], 'open', '0')
if state == 'queued' or state == 'running' then
  local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
  if redis.call('HLEN', KEYS[3]) >= total then
    finish(KEYS, 'completed', ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  end
end
return state
"""
)

MAX_APPEND = 5000  # items in one append (Lua's unpack takes a few thousand arguments)


class OpenJobs:
    """Append to and close the open jobs of a JobStore."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._append = store.redis.register_script(_APPEND)
        self._close = store.redis.register_script(_CLOSE)

    def require_open(self, job_id: str) -> None:
        """NotFound or Conflict unless the job takes more items now (`append` checks again, atomically)."""
        state, flag = self.store.redis.hmget(self.store.keys(job_id)[0], ["state", "open"])
        if state is None:
            raise NotFound(f"unknown job {job_id!r}")
        if state not in (b"queued", b"running"):
            raise Conflict(f"job {job_id} has ended: it takes no more files", {"reason": "job_ended"})
        if flag != b"1":
            raise Conflict(f"job {job_id} is closed: it takes no more files", {"reason": "job_closed"})

    def append(self, job_id: str, items: list[dict[str, Any]]) -> int:
        """Add items at the end of the job's plan; returns the new total (the items are the last ones)."""
        if not items or len(items) > MAX_APPEND:
            raise ValueError(f"append 1 to {MAX_APPEND} items at a time")
        keys = self.store.keys(job_id)
        total = int(self._append(keys=[keys[0], keys[1]], args=[json.dumps(item) for item in items]))
        if total == -3:
            raise NotFound(f"unknown job {job_id!r}")
        if total == -2:
            raise Conflict(f"job {job_id} has ended: it takes no more files", {"reason": "job_ended"})
        if total == -1:
            raise Conflict(f"job {job_id} is closed: it takes no more files", {"reason": "job_closed"})
        return total

    def close(self, job_id: str) -> str:
        """No more items: the job completes when every item has an outcome (now, if they all have one).
        Returns the state before. Closing twice is harmless."""
        keys = [*self.store.keys(job_id), ACTIVE, INDEX]
        old = self._close(keys=keys, args=[time.time(), self.store.ttl_s, PREFIX, ENDED])
        if old is None:
            raise NotFound(f"unknown job {job_id!r}")
        return old.decode() if isinstance(old, bytes) else str(old)
