"""One backup or restore at a time per stack: a Redis key that names the one running, with a short TTL
that the running process keeps renewing. When that process dies the key lapses within LOCK_TTL_S, so a
backup left `running` in its manifest is seen as interrupted and the next one may start."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import redis

from indexer.errors import Conflict

LOCK = "clipsearch:backup:lock"  # "backup:<id>" or "restore:<id>" while one runs
LOCK_TTL_S = 30.0

log = logging.getLogger(__name__)

# KEYS[1]: the lock. ARGV: the holder, then a TTL in ms ("" to release). Acts only for the holder.
_RENEW_OR_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


class BackupLock:
    def __init__(self, client: redis.Redis, ttl_s: float = LOCK_TTL_S) -> None:
        self.redis = client
        self.ttl_ms = int(ttl_s * 1000)
        self._script = client.register_script(_RENEW_OR_RELEASE)

    def acquire(self, holder: str) -> None:
        """Take the lock for ``holder``; Conflict naming the one that holds it."""
        if not self.redis.set(LOCK, holder, nx=True, px=self.ttl_ms):
            raise Conflict("another backup or restore is running", {"running": self.holder()})

    def release(self, holder: str) -> None:
        self._script(keys=[LOCK], args=[holder, ""])

    def renew(self, holder: str) -> bool:
        """Give the lock its whole TTL again, if ``holder`` still holds it."""
        return bool(self._script(keys=[LOCK], args=[holder, self.ttl_ms]))

    def holder(self) -> str | None:
        held = self.redis.get(LOCK)
        return held.decode() if isinstance(held, bytes) else held

    @contextlib.contextmanager
    def kept(self, holder: str) -> Iterator[None]:
        """Renew the lock every third of its TTL while the block runs, then release it."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.ttl_ms / 3000):
                try:
                    self.renew(holder)
                except redis.RedisError as exc:  # Redis away for a moment: try again next round
                    log.warning("could not renew the backup lock: %s", exc)

        thread = threading.Thread(target=renew, name="clipsearch-backup-lock", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.release(holder)
