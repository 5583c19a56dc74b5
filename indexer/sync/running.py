"""One sync at a time per folder and collection: a second sync of the same folder while the first runs
would plan against a collection that the first is still changing (its counts would be off, and both
could queue the same new file). The running sync's job id is kept in Redis under the pair; a job that
has ended, or expired, no longer holds it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import redis

from indexer.errors import Conflict

PREFIX = "clipsearch:sync:running:"
ATTEMPTS = 3  # a claim that races with another one's release tries again


def _key(collection: str, folder: str) -> str:
    pair = f"{collection}\0{folder}".encode("utf-8", "surrogateescape")
    return PREFIX + hashlib.sha256(pair).hexdigest()


def claim(
    client: redis.Redis, collection: str, folder: str, job_id: str, ttl_s: int, running: Callable[[str], bool]
) -> str | None:
    """Hold the pair for ``job_id``; returns None once held, else the id of the sync that runs now
    (``running(id)`` says whether a holder's job is still queued or running)."""
    key = _key(collection, folder)
    for _ in range(ATTEMPTS):
        if client.set(key, job_id, nx=True, ex=ttl_s):
            return None
        raw = client.get(key)
        if raw is None:
            continue  # released meanwhile
        holder = raw.decode() if isinstance(raw, bytes) else str(raw)
        if running(holder):
            return holder
        with client.pipeline() as pipe:  # take it over from an ended job, unless another claim did first
            try:
                pipe.watch(key)
                if pipe.get(key) != raw:
                    continue
                pipe.multi()
                pipe.set(key, job_id, ex=ttl_s)
                pipe.execute()
                return None
            except redis.WatchError:
                continue
    raise Conflict(
        "another sync of this folder is starting at this moment: try again",
        {"reason": "sync_running", "job_id": None},
    )
