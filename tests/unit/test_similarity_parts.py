"""The pure parts of the similarity network (indexer/search/similarity.py) and the compression setting of new
image collections. The Weaviate path itself runs against a real server in
tests/integration/test_classify_similarity.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from indexer.errors import InvalidInput
from indexer.search.similarity import CollectionVectors, _prefetched, exact_graph, pairs_above
from indexer.settings import Settings
from indexer.store.schema import vector_quantizer


def unit(rows: list[list[float]]) -> np.ndarray:
    a = np.asarray(rows, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_exact_graph_lists_edges_strongest_first_and_groups_components() -> None:
    vectors = unit([[1, 0, 0], [1, 0.1, 0], [0, 1, 0], [0, 1, 0.3], [0, 0, 1]])
    data = CollectionVectors(
        ["a", "b", "c", "d", "e"], ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"], vectors
    )
    graph = exact_graph(data, 0.9)
    edges = list(graph.edges())
    assert [(s, t) for s, t, _ in edges] == [("a", "b"), ("c", "d")]
    assert edges[0][2] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-6)
    assert edges[0][2] > edges[1][2]
    assert graph.components() == [[0, 1], [2, 3]]
    assert graph.method == "exact"


def test_pairs_above_is_the_same_for_any_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((300, 16)).astype(np.float32)
    vectors = unit(np.concatenate([base, base[:50] + 0.05]).tolist())
    whole = pairs_above(vectors, 0.8)
    monkeypatch.setattr("indexer.search.similarity.BLOCK_FLOATS", 1)  # the smallest blocks (64 rows)
    blocked = pairs_above(vectors, 0.8)
    for k in range(3):
        assert np.array_equal(whole[k], blocked[k])
    assert len(whole[0]) >= 50
    with pytest.raises(InvalidInput, match="raise the threshold"):
        pairs_above(vectors, -1.0, max_pairs=100)


def test_prefetched_keeps_order_and_raises_the_readers_error() -> None:
    assert list(_prefetched(iter(range(100)))) == list(range(100))

    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("scan failed")

    got: list[int] = []
    with pytest.raises(RuntimeError, match="scan failed"):
        for item in _prefetched(broken()):
            got.append(item)
    assert got == [1]


def test_prefetched_reader_ends_when_the_consumer_stops() -> None:
    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = _prefetched(endless())
    assert next(stream) == 0
    stream.close()  # the consumer leaves early (an error while querying a page)
    time.sleep(1.2)
    count = len(produced)
    time.sleep(0.6)
    assert len(produced) == count <= 4  # the reader stopped instead of reading on


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("none", None), ("rq8", ("rq", 8)), ("rq1", ("rq", 1)), ("bq", ("bq", None)), ("pq", ("pq", None))],
)
def test_vector_compression_setting_picks_the_quantizer(
    monkeypatch: pytest.MonkeyPatch, setting: str, expected: tuple[str, int | None] | None
) -> None:
    monkeypatch.setenv("WEAVIATE_VECTOR_COMPRESSION", setting)
    quantizer = vector_quantizer(Settings().weaviate_vector_compression)
    if expected is None:
        assert quantizer is None
        return
    kind, bits = expected
    assert quantizer.quantizer_name() == kind
    if bits is not None:
        assert quantizer.bits == bits


def test_vector_compression_setting_refuses_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEAVIATE_VECTOR_COMPRESSION", "zip")
    with pytest.raises(ValueError):
        vector_quantizer(Settings().weaviate_vector_compression)
