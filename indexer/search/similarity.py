"""The similarity network of a collection (after Graphext's link_embeddings): the pairs above a cosine
threshold (an edge list), and groups of near-duplicates (the connected components of that graph). The
neighbours of one image are a search: `indexer.services.search.SearchService.similar`.

Two ways to find the pairs, chosen by the collection's size (`similarity_graph`):

- **exact** (up to SIMILARITY_EXACT_MAX_IMAGES): the collection's vectors are read once and compared
  block by block in numpy. ``n^2 d`` work and ``n d`` floats in memory: on 2 cores, 10,000 images of
  dimension 512 take 2.5 s and 120 MB, 100,000 take about 2 minutes and 535 MB (benchmarks/similarity.py).
- **neighbours** (above it, up to SIMILARITY_MAX_IMAGES): the collection is read page by page (vectors of
  one page in memory at a time) and each image asks Weaviate's HNSW index for its nearest neighbours at
  or above the threshold (SIMILARITY_NEIGHBOURS of them, SIMILARITY_QUERY_CONCURRENCY queries in flight):
  ``n log n`` work on the server, memory bounded by the pairs found (100,000 images: 6.5 minutes, +18 MB;
  slower than exact there, faster from a few hundred thousand on). Approximate in two ways: HNSW may
  miss a neighbour, and an image with more than SIMILARITY_NEIGHBOURS neighbours above the threshold
  keeps only the nearest (its other pairs are still found from the other side when that side has room).
  Near-duplicate groups, which have few members each, come out the same.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from indexer.classify.prompts import normalise_rows
from indexer.errors import InvalidInput
from indexer.store.images import ImageStore, in_collection, vector_of
from indexer.store.scan import scan

BLOCK = 1024
BLOCK_FLOATS = 1 << 25  # one block of similarities: at most 128 MB
MAX_PAIRS = 2_000_000  # pairs held at once; a lower threshold than that allows is refused
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class CollectionVectors:
    ids: list[str]
    filenames: list[str]
    vectors: NDArray[np.float32]


def counted_within(store: ImageStore, collection: str, max_images: int) -> int:
    """The collection's image count; InvalidInput above ``max_images`` (SIMILARITY_MAX_IMAGES)."""
    total = store.count(collection)
    if total > max_images:
        raise InvalidInput(
            f"collection {collection!r} has {total} images; the similarity network is limited to "
            f"{max_images} (SIMILARITY_MAX_IMAGES)",
            {"count": total, "limit": max_images},
        )
    return total


def collection_vectors(store: ImageStore, collection: str, max_images: int) -> CollectionVectors:
    counted_within(store, collection, max_images)  # refused before any vector is read
    ids: list[str] = []
    names: list[str] = []
    blocks: list[NDArray[np.float32]] = []  # one array per page: 4 bytes a float, not a Python float's 32
    where = in_collection(collection)
    for page in scan(store.collection, where, "sha256", properties=["filename"], include_vector=True):
        vectors: list[list[float]] = []
        for obj in page:
            vector = vector_of(obj)
            if vector is None:
                continue
            ids.append(str(obj.uuid))
            names.append(str(obj.properties.get("filename") or ""))
            vectors.append(vector)
        if vectors:
            blocks.append(normalise_rows(np.asarray(vectors, dtype=np.float32)))
    array = np.concatenate(blocks) if blocks else np.empty((0, 0), np.float32)
    return CollectionVectors(ids, names, array)


def pairs_above(
    vectors: NDArray[np.float32], threshold: float, max_pairs: int = MAX_PAIRS
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """Every pair i < j with cosine >= threshold: (i, j, score), ordered by i then j."""
    n = len(vectors)
    found = 0
    rows: list[NDArray[np.int64]] = []
    cols: list[NDArray[np.int64]] = []
    scores: list[NDArray[np.float32]] = []
    block = max(64, min(BLOCK, BLOCK_FLOATS // max(1, n)))  # rows per product: bounded memory at any n
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        sims = vectors[lo:hi] @ vectors[lo:].T  # only the upper triangle: columns from lo on
        i, j = np.nonzero(sims >= threshold)
        j_abs = j + lo
        keep = j_abs > i + lo
        found += int(keep.sum())
        if found > max_pairs:
            raise _too_many_pairs(threshold, max_pairs)
        rows.append((i[keep] + lo).astype(np.int64))
        cols.append(j_abs[keep].astype(np.int64))
        scores.append(sims[i[keep], j[keep]].astype(np.float32))
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(scores)


def components(n: int, rows: NDArray[np.int64], cols: NDArray[np.int64]) -> list[list[int]]:
    """Connected components with two or more members (union-find), largest first, then by first member."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(rows.tolist(), cols.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for x in range(n):
        groups.setdefault(find(x), []).append(x)
    found = [members for members in groups.values() if len(members) > 1]
    return sorted(found, key=lambda members: (-len(members), members[0]))


def _too_many_pairs(threshold: float, max_pairs: int) -> InvalidInput:
    return InvalidInput(
        f"more than {max_pairs} pairs reach similarity {threshold}; raise the threshold",
        {"threshold": threshold, "max_pairs": max_pairs},
    )


@dataclass(frozen=True, eq=False)
class SimilarityGraph:
    """The pairs of a collection at or above a threshold: ``rows[k] < cols[k]`` index ``ids`` (in the
    collection's sha256 order), ``scores[k]`` is their cosine."""

    ids: list[str]
    filenames: list[str]
    rows: NDArray[np.int64]
    cols: NDArray[np.int64]
    scores: NDArray[np.float32]
    method: Literal["exact", "neighbours"]

    def components(self) -> list[list[int]]:
        return components(len(self.ids), self.rows, self.cols)

    def edges(self) -> Iterator[tuple[str, str, float]]:
        """(source id, target id, cosine), strongest first (ties in index order)."""
        for k in np.argsort(-self.scores, kind="stable"):
            yield self.ids[self.rows[k]], self.ids[self.cols[k]], round(float(self.scores[k]), 6)


def exact_graph(data: CollectionVectors, threshold: float, max_pairs: int = MAX_PAIRS) -> SimilarityGraph:
    rows, cols, scores = pairs_above(data.vectors, threshold, max_pairs)
    return SimilarityGraph(data.ids, data.filenames, rows, cols, scores, "exact")


def _prefetched(items: Iterable[T], depth: int = 1) -> Generator[T, None, None]:
    """``items`` read ahead by a thread (the next page is read while this one is queried)."""
    done = object()
    ahead: queue.Queue[object] = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Hand one item over unless the consumer has gone (then the reader ends)."""
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            failure.append(exc)
        offer(done)

    reader = threading.Thread(target=read, name="similarity-scan", daemon=True)
    reader.start()
    try:
        while (item := ahead.get()) is not done:
            yield item  # type: ignore[misc]
        if failure:
            raise failure[0]
    finally:
        stop.set()


def neighbour_graph(
    store: ImageStore,
    collection: str,
    threshold: float,
    *,
    neighbours: int,
    concurrency: int,
    max_pairs: int = MAX_PAIRS,
) -> SimilarityGraph:
    """The pairs found by one nearest-neighbour query per image through Weaviate (module docstring):
    the collection streamed page by page, each page's queries ``concurrency`` at a time."""
    where = in_collection(collection)
    index: dict[str, int] = {}  # uuid -> index, on first sight (as an image or as a neighbour)
    names: dict[int, str] = {}
    scanned: list[int] = []  # indexes in scan (sha256) order
    pairs: dict[int, float] = {}  # (low << 32 | high) -> cosine

    def index_of(uuid: str) -> int:
        found = index.get(uuid)
        if found is None:
            found = index[uuid] = len(index)
        return found

    def query(vector: list[float]) -> list[tuple[str, float]]:
        return store.neighbour_ids(vector, where, neighbours + 1, threshold)  # +1: the image itself

    pages = scan(store.collection, where, "sha256", properties=["filename"], include_vector=True)
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="similarity") as pool:
        for page in _prefetched(pages):
            queried: list[int] = []
            vectors: list[list[float]] = []
            for obj in page:
                vector = vector_of(obj)
                if vector is None:
                    continue
                i = index_of(str(obj.uuid))
                names[i] = str(obj.properties.get("filename") or "")
                scanned.append(i)
                queried.append(i)
                vectors.append(vector)
            for i, hits in zip(queried, pool.map(query, vectors), strict=True):
                for uuid, score in hits:
                    j = index_of(uuid)
                    if j == i or score < threshold:
                        continue
                    key = (min(i, j) << 32) | max(i, j)
                    if key not in pairs:
                        pairs[key] = score
                        if len(pairs) > max_pairs:
                            raise _too_many_pairs(threshold, max_pairs)
    # Number the images in scan order, as the exact path does; one seen only as a neighbour (added
    # while this ran) goes last.
    position = np.full(len(index), -1, np.int64)
    position[np.asarray(scanned, np.int64)] = np.arange(len(scanned))
    late = np.nonzero(position < 0)[0]
    position[late] = len(scanned) + np.arange(len(late))
    by_position = np.argsort(position)
    uuids = list(index)
    ids = [uuids[k] for k in by_position.tolist()]
    filenames = [names.get(k, "") for k in by_position.tolist()]
    keys = np.fromiter(pairs.keys(), np.int64, len(pairs))
    scores = np.fromiter(pairs.values(), np.float32, len(pairs))
    a, b = position[keys >> 32], position[keys & 0xFFFFFFFF]
    rows, cols = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((cols, rows))
    return SimilarityGraph(ids, filenames, rows[order], cols[order], scores[order], "neighbours")


def similarity_graph(
    store: ImageStore,
    collection: str,
    threshold: float,
    *,
    exact_max_images: int,
    max_images: int,
    neighbours: int,
    concurrency: int,
    max_pairs: int = MAX_PAIRS,
) -> SimilarityGraph:
    """The collection's pairs at or above ``threshold``: exact up to ``exact_max_images`` images, through
    Weaviate's nearest-neighbour queries above (module docstring); refused above ``max_images``."""
    total = counted_within(store, collection, max_images)
    if total <= exact_max_images:
        return exact_graph(collection_vectors(store, collection, max_images), threshold, max_pairs)
    return neighbour_graph(
        store, collection, threshold, neighbours=neighbours, concurrency=concurrency, max_pairs=max_pairs
    )
