"""Collecting blobs (originals and thumbnails) that no stored object refers to any more.

Blobs are content-addressed by sha256 and shared: the same bytes uploaded into two collections (or kept
as a classifier's example image) are one original and one thumbnail. So a delete does not remove blobs;
it hands the deleted objects' hashes to `BlobCollector.collect`, which removes a blob only when no
image and no class reference in Weaviate (any model) still carries its sha256.

Safe against a concurrent ingest of the same bytes, through two Redis keys per hash:

- an ingest *pins* a hash (`clipsearch:blob:pin:<sha>`, a counter with a TTL) before it writes the
  blob, and unpins it once its Weaviate object is written;
- the collector *claims* a hash (`clipsearch:blob:gc:<sha>`) only when it is not pinned, in one atomic
  script, and holds the claim while it checks Weaviate and unlinks the files.

A pin taken while a claim is held waits for the claim to go (the unlink is then finished, and the ingest
writes the blob afresh); a claim is refused while a pin is held. Either way no object is left without
its blob. A crash leaves at worst a blob that nothing refers to (a leak, never a loss): pins and claims
expire.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis
import weaviate
from weaviate.classes.query import Filter

from indexer.storage.blobs import BlobStore
from indexer.store.images import ImageStore
from indexer.store.scan import scan
from indexer.store.types import WhereFilter

log = logging.getLogger(__name__)

PIN = "clipsearch:blob:pin:"
CLAIM = "clipsearch:blob:gc:"
PIN_TTL_S = 3600  # longer than any chunk takes; a crashed ingest's pin goes by itself
CLAIM_TTL_MS = 60_000
BATCH = 100  # hashes per Weaviate reference check
# Weaviate collections whose objects carry a blob's sha256: images and class references, every model.
REFERRING_PREFIXES = ("Images_", "ClassReference_")

# KEYS: pin keys, then claim keys (n each). ARGV: pin TTL (s). Pins every hash; returns the indexes
# (1-based) of the hashes that a collector holds right now.
_PIN = """
local n = #KEYS / 2
local busy = {}
for i = 1, n do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
  if redis.call('EXISTS', KEYS[n + i]) == 1 then table.insert(busy, i) end
end
return busy
"""

# KEYS: pin keys. Unpins every hash (a counter at zero is deleted).
_UNPIN = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 and redis.call('DECR', KEYS[i]) <= 0 then
    redis.call('DEL', KEYS[i])
  end
end
return 0
"""

# KEYS: pin keys, then claim keys (n each). ARGV: claim TTL (ms), a token. Claims every hash that no ingest
# has pinned and no other collector holds; returns the indexes (1-based) of the claimed ones.
_CLAIM = """
local n = #KEYS / 2
local claimed = {}
for i = 1, n do
  local pins = tonumber(redis.call('GET', KEYS[i]) or '0')
  if pins <= 0 and redis.call('SET', KEYS[n + i], ARGV[2], 'NX', 'PX', ARGV[1]) then
    table.insert(claimed, i)
  end
end
return claimed
"""

# KEYS: claim keys. ARGV: the token. Releases the claims this collector holds.
_RELEASE = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
"""


def _batches(items: Sequence[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class BlobCollector:
    def __init__(self, client: weaviate.WeaviateClient, redis_client: redis.Redis, blobs: BlobStore) -> None:
        self.client = client
        self.redis = redis_client
        self.blobs = blobs
        self._pin = redis_client.register_script(_PIN)
        self._unpin = redis_client.register_script(_UNPIN)
        self._claim = redis_client.register_script(_CLAIM)
        self._release = redis_client.register_script(_RELEASE)

    # -- the ingest side ---------------------------------------------------------------------------
    def pin(self, shas: Sequence[str], wait_s: float = 30.0) -> None:
        """Keep these hashes' blobs from being collected until `unpin`; waits out a collection already
        under way for one of them (so the caller then writes the blob afresh)."""
        shas = sorted(set(shas))
        if not shas:
            return
        keys = [PIN + s for s in shas] + [CLAIM + s for s in shas]
        busy = [shas[int(i) - 1] for i in self._pin(keys=keys, args=[PIN_TTL_S])]
        deadline = time.monotonic() + wait_s
        while busy and time.monotonic() < deadline:
            time.sleep(0.05)
            held = self.redis.mget([CLAIM + s for s in busy])
            busy = [s for s, claim in zip(busy, held, strict=True) if claim]
        if busy:
            log.warning("blob collection holds %d hashes after %.0f s; writing anyway", len(busy), wait_s)

    def unpin(self, shas: Sequence[str]) -> None:
        shas = sorted(set(shas))
        if shas:
            self._unpin(keys=[PIN + s for s in shas])

    @contextlib.contextmanager
    def pinned(self, shas: Sequence[str]) -> Iterator[None]:
        self.pin(shas)
        try:
            yield
        finally:
            with contextlib.suppress(redis.RedisError):
                self.unpin(shas)

    # -- the delete side ---------------------------------------------------------------------------
    def _referring_collections(self) -> list[Any]:
        names = self.client.collections.list_all(simple=True)
        return [self.client.collections.use(n) for n in names if str(n).startswith(REFERRING_PREFIXES)]

    def referenced(self, shas: Sequence[str]) -> set[str]:
        """The hashes among `shas` that some image or class reference still carries."""
        found: set[str] = set()
        for collection in self._referring_collections():
            for batch in _batches([s for s in shas if s not in found]):
                limit = 10_000
                result = collection.query.fetch_objects(
                    filters=Filter.by_property("sha256").contains_any(batch),
                    limit=limit,
                    return_properties=["sha256"],
                )
                if len(result.objects) >= limit:  # cannot tell which are left: keep them all
                    found.update(batch)
                    continue
                found.update(str(obj.properties.get("sha256")) for obj in result.objects)
        return found

    def collect(self, shas: Iterable[str]) -> int:
        """Remove the blobs of these hashes that nothing refers to any more; returns how many went."""
        removed = 0
        for batch in _batches(sorted(set(shas))):
            token = f"{time.time_ns()}-{id(self)}"
            keys = [PIN + s for s in batch] + [CLAIM + s for s in batch]
            claimed = [batch[int(i) - 1] for i in self._claim(keys=keys, args=[CLAIM_TTL_MS, token])]
            if not claimed:
                continue
            try:
                still = self.referenced(claimed)
                for sha in claimed:
                    if sha not in still:
                        removed += self.blobs.delete(sha)
            finally:
                self._release(keys=[CLAIM + s for s in claimed], args=[token])
        return removed


def delete_images(store: ImageStore, filters: WhereFilter, collector: BlobCollector | None) -> int:
    """Delete every image object that matches `filters` (one user collection), page by page, and
    collect the blobs that no other object refers to. Returns how many objects were deleted."""
    if collector is None:
        return store.delete_where(filters)
    deleted = 0
    for page in scan(store.collection, filters, "sha256", properties=["sha256"]):
        ids = [str(obj.uuid) for obj in page]
        result = store.collection.data.delete_many(where=Filter.by_id().contains_any(ids))
        deleted += int(result.successful)
        collector.collect(str(obj.properties["sha256"]) for obj in page)
    # Objects written while we paged (a concurrent ingest) are deleted too; their blobs stay until the
    # next delete that names them.
    return deleted + store.delete_where(filters)
