"""Synthetic image objects for the benchmarks: random unit vectors written straight into a collection."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np

from indexer.store.images import ImageRecord, ImageStore, to_properties


def fill(store: ImageStore, collection: str, dim: int, target: int, duplicate_every: int = 0) -> None:
    """Insert synthetic unit vectors until ``collection`` holds ``target`` objects (tags `synthetic` and
    `t0`..`t9`, metadata `i` and `cam`, so that filtered searches have something to match).
    ``duplicate_every=k``: every k-th object is a near-duplicate of the one before it (cosine about 0.97),
    so that the similarity network has pairs to find."""
    have = store.count(collection)
    rng = np.random.default_rng(have)
    now = datetime.now(UTC)
    vector = np.zeros(dim, np.float32)
    with store.collection.batch.fixed_size(batch_size=1000, concurrent_requests=2) as batch:
        for i in range(have, target):
            if duplicate_every and i % duplicate_every == duplicate_every - 1 and i > have:
                noise = rng.standard_normal(dim).astype(np.float32)
                vector = vector + 0.25 * noise / np.linalg.norm(noise)
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
