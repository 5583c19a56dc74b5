"""The similarity network of a collection (after Graphext's link_embeddings): the pairs above a cosine
threshold (an edge list), and groups of near-duplicates (the connected components of that graph). The
neighbours of one image are a search: `indexer.services.search.SearchService.similar`.

Pairs are exact: the collection's vectors are read once and compared block by block in numpy
(``n^2 d`` work; 10,000 images of dimension 512 take a few seconds on 2 cores), so the size of a
collection this runs on is capped by SIMILARITY_MAX_IMAGES.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from weaviate.classes.query import Filter

from indexer.classify.prompts import normalise_rows
from indexer.errors import InvalidInput
from indexer.store.images import ImageStore
from indexer.store.scan import scan, vector_of

BLOCK = 1024
MAX_PAIRS = 2_000_000  # pairs held at once; a lower threshold than that allows is refused


@dataclass(frozen=True, eq=False)
class CollectionVectors:
    ids: list[str]
    filenames: list[str]
    vectors: NDArray[np.float32]


def collection_vectors(store: ImageStore, collection: str, max_images: int) -> CollectionVectors:
    total = store.count(collection)
    if total > max_images:
        raise InvalidInput(
            f"collection {collection!r} has {total} images; the similarity network is limited to "
            f"{max_images} (SIMILARITY_MAX_IMAGES)",
            {"count": total, "limit": max_images},
        )
    ids: list[str] = []
    names: list[str] = []
    vectors: list[list[float]] = []
    where = Filter.by_property("collection").equal(collection)
    for page in scan(store.collection, where, "sha256", properties=["filename"], include_vector=True):
        for obj in page:
            vector = vector_of(obj)
            if vector is None:
                continue
            ids.append(str(obj.uuid))
            names.append(str(obj.properties.get("filename") or ""))
            vectors.append(vector)
    array = normalise_rows(np.asarray(vectors, dtype=np.float32)) if vectors else np.empty((0, 0), np.float32)
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
    for lo in range(0, n, BLOCK):
        hi = min(n, lo + BLOCK)
        sims = vectors[lo:hi] @ vectors[lo:].T  # only the upper triangle: columns from lo on
        i, j = np.nonzero(sims >= threshold)
        j_abs = j + lo
        keep = j_abs > i + lo
        found += int(keep.sum())
        if found > max_pairs:
            raise InvalidInput(
                f"more than {max_pairs} pairs reach similarity {threshold}; raise the threshold",
                {"threshold": threshold, "max_pairs": max_pairs},
            )
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


def iter_edges(data: CollectionVectors, threshold: float) -> Iterator[tuple[str, str, float]]:
    rows, cols, scores = pairs_above(data.vectors, threshold)
    order = np.argsort(-scores, kind="stable")
    for k in order:
        yield data.ids[rows[k]], data.ids[cols[k]], round(float(scores[k]), 6)
