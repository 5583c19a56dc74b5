"""Blob collection (indexer/blob_gc.py): pins, claims and deletes against a real redis-server and a blob
store in a local directory. Which hashes Weaviate still refers to is the one part given here (a set), so
that the Redis protocol and the deletes are what is tested."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from indexer.storage.blobs import BlobStore
from indexer.storage.gc import BATCH, CLAIM, CLAIM_TTL_MS, PIN, PIN_TTL_S, BlobCollector
from indexer.storage.objectstore import LocalObjectStore


class Collector(BlobCollector):
    """A collector whose reference check answers from `still_used` and records what it was asked."""

    def __init__(self, redis_client: redis.Redis, blobs: BlobStore, still_used: set[str]) -> None:
        super().__init__(None, redis_client, blobs)  # type: ignore[arg-type]  # no Weaviate here
        self.still_used = still_used
        self.asked: list[list[str]] = []
        self.during_check: list[int] = []  # claim keys held while each check ran

    def referenced(self, shas: Sequence[str]) -> set[str]:
        self.asked.append(list(shas))
        self.during_check.append(len(self.redis.keys(CLAIM + "*")))
        return {s for s in shas if s in self.still_used}


def sha(n: int) -> str:
    return hashlib.sha256(f"image {n}".encode()).hexdigest()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(store=LocalObjectStore(tmp_path / "blobs"))


def stored(blobs: BlobStore, *shas: str) -> None:
    for s in shas:
        blobs.put_original(s, s.encode())
        blobs.put_thumbnail(s, b"thumb " + s.encode())


def kept(blobs: BlobStore, *shas: str) -> list[bool]:
    return [blobs.has(s) and blobs.has(s, "thumbnail") for s in shas]


def test_collect_removes_only_what_nothing_refers_to(redis_client: redis.Redis, blobs: BlobStore) -> None:
    a, b, c = sha(1), sha(2), sha(3)
    stored(blobs, a, b, c)
    collector = Collector(redis_client, blobs, still_used={b})
    assert collector.collect([a, b, c, a]) == 2
    assert kept(blobs, a, b, c) == [False, True, False]
    assert not blobs.has(a, "thumbnail") and not blobs.has(c, "thumbnail")  # both parts go
    assert collector.asked == [sorted({a, b, c})]  # each hash once
    assert collector.during_check == [3]  # every hash claimed while Weaviate was asked...
    assert redis_client.keys(CLAIM + "*") == []  # ...and released after
    assert collector.collect([a]) == 0  # already gone: nothing to remove


def test_a_pinned_hash_is_never_claimed_until_every_pin_is_gone(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    a, b = sha(1), sha(2)
    stored(blobs, a, b)
    collector = Collector(redis_client, blobs, still_used=set())
    collector.pin([a])
    collector.pin([a, a])  # two ingests of the same bytes: the counter counts each pin once per call
    assert int(redis_client.get(PIN + a) or 0) == 2
    assert 0 < redis_client.ttl(PIN + a) <= PIN_TTL_S  # a crashed ingest's pin goes by itself
    assert collector.collect([a, b]) == 1
    assert collector.asked == [[b]]  # the pinned hash is not even looked up
    assert kept(blobs, a, b) == [True, False]
    collector.unpin([a])
    assert collector.collect([a]) == 0 and kept(blobs, a) == [True]  # one pin is left
    collector.unpin([a])
    assert not redis_client.exists(PIN + a)  # a counter at zero is deleted
    assert collector.collect([a]) == 1 and kept(blobs, a) == [False]


def test_a_pinned_block_unpins_even_when_it_fails(redis_client: redis.Redis, blobs: BlobStore) -> None:
    a = sha(1)
    stored(blobs, a)
    collector = Collector(redis_client, blobs, still_used=set())
    with pytest.raises(RuntimeError, match="ingest failed"), collector.pinned([a]):
        assert collector.collect([a]) == 0
        raise RuntimeError("ingest failed")
    assert not redis_client.exists(PIN + a)
    assert collector.collect([a]) == 1


def test_a_hash_another_collector_holds_is_left_to_it(redis_client: redis.Redis, blobs: BlobStore) -> None:
    a, b = sha(1), sha(2)
    stored(blobs, a, b)
    redis_client.set(CLAIM + a, "other-collector", px=CLAIM_TTL_MS)
    collector = Collector(redis_client, blobs, still_used=set())
    assert collector.collect([a, b]) == 1
    assert collector.asked == [[b]] and kept(blobs, a, b) == [True, False]
    assert redis_client.get(CLAIM + a) == b"other-collector"  # our release leaves its claim alone


def test_a_failed_reference_check_deletes_nothing_and_releases_its_claims(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    class Unreachable(Collector):
        def referenced(self, shas: Sequence[str]) -> set[str]:
            raise ConnectionError("weaviate is down")

    a = sha(1)
    stored(blobs, a)
    with pytest.raises(ConnectionError):
        Unreachable(redis_client, blobs, still_used=set()).collect([a])
    assert kept(blobs, a) == [True] and redis_client.keys(CLAIM + "*") == []


def test_hashes_are_checked_in_batches(redis_client: redis.Redis, blobs: BlobStore) -> None:
    shas = [sha(i) for i in range(BATCH + 5)]
    stored(blobs, *shas)
    collector = Collector(redis_client, blobs, still_used=set(shas[::2]))
    assert collector.collect(shas) == len(shas[1::2])
    assert [len(batch) for batch in collector.asked] == [BATCH, 5]
    assert collector.during_check == [BATCH, 5]  # one batch's claims at a time
    assert kept(blobs, *shas) == [i % 2 == 0 for i in range(len(shas))]


def test_nothing_to_do_costs_nothing(redis_client: redis.Redis, blobs: BlobStore) -> None:
    collector = Collector(redis_client, blobs, still_used=set())
    collector.pin([])
    collector.unpin([])
    assert collector.collect([]) == 0 and collector.asked == []
    assert redis_client.dbsize() == 0


def test_a_pin_warns_when_a_collection_outlasts_its_wait(
    redis_client: redis.Redis, blobs: BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = sha(1), sha(2)
    redis_client.set(CLAIM + a, "collector", px=CLAIM_TTL_MS)
    collector = Collector(redis_client, blobs, still_used=set())
    with caplog.at_level(logging.WARNING, logger="indexer.storage.gc"):
        collector.pin([b], wait_s=0)
        assert caplog.records == []  # nothing held: no wait, no warning
        collector.pin([a], wait_s=0)
    assert [r.getMessage() for r in caplog.records] == [
        "blob collection holds 1 hashes after 0 s; writing anyway"
    ]
    assert int(redis_client.get(PIN + a) or 0) == 1  # pinned all the same: no later claim can take it


def test_a_pin_waits_out_a_collection_under_way(
    redis_client: redis.Redis, blobs: BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A collector holds the hash; the pin is taken, then waits until the claim goes (here: released
    by another thread once it sees the pin), so the ingest writes its blob after the unlink."""
    a = sha(1)
    redis_client.set(CLAIM + a, "collector", px=CLAIM_TTL_MS)
    released = threading.Event()

    def collector_finishes() -> None:
        watcher = redis.Redis(connection_pool=redis_client.connection_pool)
        while not watcher.exists(PIN + a):  # the pin is taken (and found the claim) ...
            released.wait(0.01)
        watcher.delete(CLAIM + a)  # ... then the collection under way ends
        released.set()

    thread = threading.Thread(target=collector_finishes)
    thread.start()
    with caplog.at_level(logging.WARNING, logger="indexer.storage.gc"):
        Collector(redis_client, blobs, still_used=set()).pin([a], wait_s=60)
    thread.join()
    assert released.is_set() and not redis_client.exists(CLAIM + a)
    assert caplog.records == []  # it waited for the claim rather than write past it
