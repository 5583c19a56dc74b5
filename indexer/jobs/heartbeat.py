"""Worker heartbeats in Redis, so that /health knows the live workers without asking them.

Each worker writes `clipsearch:worker:<name>` with a time to live of three heartbeat intervals, every
interval, and adds its name to the set `clipsearch:workers`. A reader takes the set's names whose key is
still there (and drops the others from the set): two round trips, however busy the workers are. A worker
that stops cleanly deletes its key; one that is killed drops out when its key expires.
"""

from __future__ import annotations

import json
import time

import redis

WORKERS = "clipsearch:workers"
PREFIX = "clipsearch:worker:"
TTL_INTERVALS = 3


def ttl_ms(interval_s: float) -> int:
    return max(1, round(interval_s * TTL_INTERVALS * 1000))


def beat(client: redis.Redis, name: str, interval_s: float, info: dict[str, object] | None = None) -> None:
    """Say that worker `name` is alive for the next three intervals."""
    value = json.dumps({"at": time.time(), **(info or {})})
    pipe = client.pipeline(transaction=True)
    pipe.set(PREFIX + name, value, px=ttl_ms(interval_s))
    pipe.sadd(WORKERS, name)
    pipe.execute()


def forget(client: redis.Redis, name: str) -> None:
    """A clean stop: the worker is gone now, not when its key expires."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(PREFIX + name)
    pipe.srem(WORKERS, name)
    pipe.execute()


def worker_alive(client: redis.Redis, name: str) -> bool:
    """Worker `name`'s heartbeat has not expired (one round trip)."""
    return bool(client.exists(PREFIX + name))


def live_workers(client: redis.Redis) -> list[str]:
    """Names of the workers whose last heartbeat has not expired, sorted."""
    members: set[bytes | str] = client.smembers(WORKERS)
    names = sorted(n.decode() if isinstance(n, bytes) else str(n) for n in members)
    if not names:
        return []
    values = client.mget([PREFIX + name for name in names])
    alive = [name for name, value in zip(names, values, strict=True) if value is not None]
    dead = [name for name, value in zip(names, values, strict=True) if value is None]
    if dead:
        # Only those still without a key: one may have beaten again since the MGET.
        client.eval(_DROP_EXPIRED, 1, WORKERS, PREFIX, *dead)
    return alive


_DROP_EXPIRED = """
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then redis.call('SREM', KEYS[1], ARGV[i]) end
end
return 0
"""
