"""The index of open upload jobs (issue 23): a sorted set of job id -> the time of its last activity (open
or append), which bounds how many are open at once and finds the ones left idle.

`reserve` admits a new open job only while fewer than the cap are open (one atomic script, so parallel
opens cannot overshoot). `expire` ends an open job as failed once it has taken nothing since the cutoff
and no item of it waits for a worker (an item in flight counts as activity); the caller then removes
its staged files. A job that was closed, cancelled or ended otherwise is dropped from the index.
"""

from __future__ import annotations

import time
from enum import IntEnum

import redis

from indexer.jobs import scripts
from indexer.jobs.store import ACTIVE, ENDED, INDEX, PREFIX, JobStore

OPEN_INDEX = "clipsearch:jobs:open"
SWEEP_BATCH = 100  # candidates read per sweep round

# KEYS[1]: OPEN_INDEX. ARGV: job id, now, cap. 1: admitted (and indexed), 0: the cap is reached.
_RESERVE = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# KEYS: the job's keys as scripts.FINISH (1-7), then OPEN_INDEX. ARGV: now, ttl, PREFIX, ENDED, cutoff,
# failure reason, job id. Returns an Expiry.
_EXPIRE = (
    scripts.FINISH
    + scripts.HOLD
    + """
local score = redis.call('ZSCORE', KEYS[8], ARGV[7])
if not score then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then redis.call('ZREM', KEYS[8], ARGV[7]) return 3 end
if (state ~= 'queued' and state ~= 'running') then redis.call('ZREM', KEYS[8], ARGV[7]) return 3 end
if hold_of(KEYS[1]) ~= 'open' then redis.call('ZREM', KEYS[8], ARGV[7]) return 2 end
if tonumber(score) > tonumber(ARGV[5]) then return 0 end
if redis.call('HLEN', KEYS[3]) < tonumber(redis.call('HGET', KEYS[1], 'total')) then
  redis.call('ZADD', KEYS[8], ARGV[1], ARGV[7])
  return 0
end
finish(KEYS, 'failed', ARGV[1], ARGV[2], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[1], 'failure', ARGV[6])
redis.call('ZREM', KEYS[8], ARGV[7])
return 1
"""
)


class Expiry(IntEnum):
    KEPT = 0  # active, or idle for less than the cutoff
    EXPIRED = 1  # ended now as failed: its staged files are the caller's to remove
    CLOSED = 2  # closed by its client: its chunks (and their clean-up) run on
    ENDED = 3  # ended otherwise (or gone): its staging may go


class OpenIndex:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.redis: redis.Redis = store.redis
        self._reserve = self.redis.register_script(_RESERVE)
        self._expire = self.redis.register_script(_EXPIRE)

    def reserve(self, job_id: str, cap: int) -> bool:
        """Index a new open job unless ``cap`` are open already (then False)."""
        return bool(self._reserve(keys=[OPEN_INDEX], args=[job_id, time.time(), cap]))

    def touch(self, job_id: str) -> None:
        """The job took files now (only an indexed job is touched)."""
        self.redis.zadd(OPEN_INDEX, {job_id: time.time()}, xx=True)

    def forget(self, job_id: str) -> None:
        self.redis.zrem(OPEN_INDEX, job_id)

    def oldest_activity(self) -> float | None:
        """The time of the least recent activity among the open jobs (None: none open)."""
        first = self.redis.zrange(OPEN_INDEX, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def count(self) -> int:
        return int(self.redis.zcard(OPEN_INDEX))

    def idle(self, cutoff: float) -> list[str]:
        """Open jobs whose last activity is older than ``cutoff`` (a batch of them)."""
        ids = self.redis.zrangebyscore(OPEN_INDEX, "-inf", cutoff, start=0, num=SWEEP_BATCH)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def expire(self, job_id: str, cutoff: float, reason: str) -> Expiry:
        """End the job as failed with ``reason`` if it is still open, idle since ``cutoff`` and has no item
        waiting; see Expiry for the other outcomes."""
        keys = [*self.store.keys(job_id), ACTIVE, INDEX, OPEN_INDEX]
        args: list[str | float] = [time.time(), self.store.ttl_s, PREFIX, ENDED, cutoff, reason, job_id]
        return Expiry(int(self._expire(keys=keys, args=args)))
