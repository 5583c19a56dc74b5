"""Synthetic image objects for the benchmarks: unit vectors written straight into a collection.

Two distributions of vectors:

- `fill`'s own stream (the default): independent standard-normal directions. In 512 dimensions every
  pair is at cosine 0 +- 0.044, so a query has no neighbourhood beyond planted near-duplicates.
- `Clustered`: a few thousand seeded cluster centres, each with its own low-dimensional spread, plus a
  little isotropic noise, as real CLIP embeddings are clustered and anisotropic. Rows are generated in
  seeded blocks, so any range [start, stop) is reproducible in-process (the exact answer of
  benchmarks/recall.py is recomputed, not read back from Weaviate).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from indexer.store.images import ImageRecord, ImageStore, to_properties

BLOCK = 10_000  # rows per seeded block of a generated distribution

# (start, stop) -> the unit vectors of rows start..stop-1, float32, shape (stop - start, dim)
VectorSource = Callable[[int, int], NDArray[np.float32]]


def _unit(v: NDArray[np.float32]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


class Clustered:
    """Unit vectors normalised(centre_c + spread * B_c z / sqrt(rank) + jitter * e / sqrt(dim)): c a seeded
    cluster (uniform over `clusters`), centre_c a random unit direction, B_c `rank` random directions of
    its own (z standard normal in `rank` dimensions) and e isotropic noise in all dimensions.

    With the defaults (4096 clusters, rank 8, spread 0.6, jitter 0.2) a fresh draw is at cosine ~0.89
    (100k stored) to ~0.93 (1M) to its nearest stored vector, and at most ~0.15 to anything outside its
    cluster, so from 100k on its exact top 10 lie in its own cluster, well apart from the bulk
    (benchmarks/recall.py prints the measured gaps)."""

    def __init__(
        self,
        dim: int,
        seed: int = 0,
        clusters: int = 4096,
        rank: int = 8,
        spread: float = 0.6,
        jitter: float = 0.2,
    ) -> None:
        self.dim, self.seed, self.rank = dim, seed, rank
        self.spread, self.jitter = spread, jitter
        rng = np.random.default_rng([seed, 0])
        self.centres = _unit(rng.standard_normal((clusters, dim), dtype=np.float32))
        # rows of random Gaussian / sqrt(dim): each about unit length, nearly orthogonal in 512 dimensions
        self.bases = rng.standard_normal((clusters, rank, dim), dtype=np.float32) / np.float32(np.sqrt(dim))

    def draw(self, rng: np.random.Generator, n: int) -> NDArray[np.float32]:
        """n fresh vectors from the same clusters (queries use a stream of their own)."""
        clusters = rng.integers(len(self.centres), size=n)
        out = np.empty((n, self.dim), np.float32)
        for lo in range(0, n, 2000):
            c = clusters[lo : lo + 2000]
            z = rng.standard_normal((len(c), self.rank), dtype=np.float32)
            e = rng.standard_normal((len(c), self.dim), dtype=np.float32)
            v = self.centres[c] + np.float32(self.spread / np.sqrt(self.rank)) * np.einsum(
                "nr,nrd->nd", z, self.bases[c]
            )
            v += np.float32(self.jitter / np.sqrt(self.dim)) * e
            out[lo : lo + len(c)] = _unit(v)
        return out

    def rows(self, start: int, stop: int) -> NDArray[np.float32]:
        return _blocks(
            start, stop, self.dim, lambda b: self.draw(np.random.default_rng([self.seed, 1, b]), BLOCK)
        )

    def queries(self, n: int, seed: int = 987) -> NDArray[np.float32]:
        return self.draw(np.random.default_rng([self.seed, 2, seed]), n)


def uniform_rows(dim: int, seed: int = 0) -> VectorSource:
    """Independent standard-normal directions, in seeded blocks (the old default, for comparison)."""

    def block(b: int) -> NDArray[np.float32]:
        return _unit(np.random.default_rng([seed, 3, b]).standard_normal((BLOCK, dim), dtype=np.float32))

    return lambda start, stop: _blocks(start, stop, dim, block)


def _blocks(
    start: int, stop: int, dim: int, block: Callable[[int], NDArray[np.float32]]
) -> NDArray[np.float32]:
    out = np.empty((stop - start, dim), np.float32)
    for b in range(start // BLOCK, (stop + BLOCK - 1) // BLOCK):
        lo, hi = max(start, b * BLOCK), min(stop, (b + 1) * BLOCK)
        out[lo - start : hi - start] = block(b)[lo - b * BLOCK : hi - b * BLOCK]
    return out


def fill(
    store: ImageStore,
    collection: str,
    dim: int,
    target: int,
    duplicate_every: int = 0,
    *,
    vectors: VectorSource | None = None,
    batch_size: int = 1000,
    concurrent_requests: int = 2,
) -> None:
    """Insert synthetic unit vectors until ``collection`` holds ``target`` objects (tags `synthetic` and
    `t0`..`t9`, metadata `i` and `cam`, so that filtered searches have something to match).
    ``duplicate_every=k``: every k-th object is a near-duplicate of the one before it (cosine about 0.97),
    so that the similarity network has pairs to find.
    ``vectors``: take object i's vector from this source (row i, e.g. `Clustered(dim).rows`) instead of
    the default stream; it is read in blocks, and ``duplicate_every`` does not apply."""
    have = store.count(collection)
    rng = np.random.default_rng(have)
    now = datetime.now(UTC)
    vector = np.zeros(dim, np.float32)
    block: NDArray[np.float32] = np.empty((0, dim), np.float32)
    with store.collection.batch.fixed_size(
        batch_size=batch_size, concurrent_requests=concurrent_requests
    ) as batch:
        for i in range(have, target):
            if vectors is not None:
                if (i - have) % BLOCK == 0:
                    block = vectors(i, min(target, i + BLOCK))
                vector = block[(i - have) % BLOCK]
            elif duplicate_every and i % duplicate_every == duplicate_every - 1 and i > have:
                noise = rng.standard_normal(dim).astype(np.float32)
                vector = vector + 0.25 * noise / np.linalg.norm(noise)
                vector /= np.linalg.norm(vector)
            else:
                vector = rng.standard_normal(dim).astype(np.float32)
                vector /= np.linalg.norm(vector)
            record = ImageRecord(
                id=str(uuid.uuid4()),
                collection=collection,
                filename=f"syn{i}.jpg",
                sha256=f"{i:064x}",
                format="jpeg",
                width=640,
                height=480,
                bytes=100_000,
                ingested_at=now,
                tags=["synthetic", f"t{i % 10}"],
                metadata={"i": i, "cam": "bench"},
            )
            batch.add_object(properties=to_properties(record), uuid=record.id, vector=vector.tolist())
    assert store.count(collection) >= target, "synthetic insert fell short"
