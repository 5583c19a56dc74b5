"""The pure parts of search: the text-embedding cache, the weighted combination, sort_by."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from numpy.typing import NDArray

from indexer.errors import InvalidInput
from indexer.search import TextEmbeddingCache, combine, sort_hits
from indexer.store.images import ImageRecord, ScoredImage


def test_text_cache_encodes_each_text_once_and_drops_the_least_recently_used() -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> NDArray[np.float32]:
        calls.append(texts)
        return np.asarray([[float(len(t)), 1.0] for t in texts], np.float32)

    cache = TextEmbeddingCache(maxsize=2)
    vectors, all_cached = cache.get_many("m", ["a", "bb", "a"], encode)
    assert not all_cached and calls == [["a", "bb"]] and vectors.shape == (3, 2)
    assert cache.get_many("m", ["bb"], encode)[1] is True
    assert cache.get_many("other-model", ["bb"], encode)[1] is False  # keyed by model too
    assert cache.get_many("m", ["a"], encode)[1] is False  # evicted: "bb" was used later
    assert (cache.hits, cache.misses) == (2, 4)


def test_weighted_queries_that_cancel_out_are_refused() -> None:
    v = np.asarray([[1.0, 0.0]], np.float32)
    assert combine(np.vstack([v, v]), [1.0, 1.0]).tolist() == [1.0, 0.0]
    with pytest.raises(InvalidInput, match="cancel out"):
        combine(np.vstack([v, v]), [1.0, -1.0])


def _hit(name: str, score: float, **metadata: object) -> ScoredImage:
    record = ImageRecord(
        id=name,
        collection="c",
        filename=name,
        sha256="0" * 64,
        format="jpeg",
        width=1,
        height=1,
        ingested_at=datetime(2024, 1, 1, tzinfo=UTC),
        metadata=metadata,
    )
    return ScoredImage(image=record, score=score)


def test_sort_hits_keeps_score_order_on_ties_and_puts_missing_values_last() -> None:
    hits = [_hit("a", 0.9, y=1), _hit("b", 0.8), _hit("c", 0.7, y=2), _hit("d", 0.6, y=1)]
    assert [h.image.id for h in sort_hits(hits, "-metadata.y")] == ["c", "a", "d", "b"]
    assert [h.image.id for h in sort_hits(hits, "metadata.y")] == ["a", "d", "c", "b"]
