#!/usr/bin/env python
"""Nearest-neighbour quality and cost at scale, with the vector compression as a setting: recall@10 of
Weaviate's HNSW search against exact search, p50/p99 latency, insert rate and Weaviate's RSS.

    python benchmarks/recall.py --scales 100000                       # uncompressed
    python benchmarks/recall.py --scales 100000 --compression rq8     # 8-bit rotational quantization
    python benchmarks/recall.py --scales 100000 1000000 --compression rq8

One Weaviate node starts on loopback in a temporary directory; one image collection (created with
WEAVIATE_VECTOR_COMPRESSION = --compression) is filled with synthetic unit vectors (benchmarks/synthetic.py,
dimension 512, seeded, so that this script regenerates them for the exact answer instead of reading
them back). Queries are stored vectors plus noise (cosine about 0.9 to their source), so that each has a
neighbourhood as a real query would; exact top 10 by numpy over the regenerated vectors, in blocks.
The queries run as the service runs them: filtered by the collection, limit 10.

Caveat: in 512 dimensions, independent random vectors are all at cosine 0 +- 0.044 from a query, so
beyond its source (the nearest, at about 0.9) a query's exact top 10 are ties in all but name; recall@10
on this data is a floor, not what clustered CLIP embeddings get. The line also reports how often the
nearest itself is found.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.synthetic import fill  # noqa: E402
from clipsearch.weaviate_server import WeaviateServer  # noqa: E402
from indexer.settings import Settings  # noqa: E402
from indexer.store.connection import connect  # noqa: E402
from indexer.store.images import ImageStore  # noqa: E402

DIM = 512
K = 10
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def regenerated(n: int) -> NDArray[np.float32]:
    """The vectors benchmarks/synthetic.fill wrote (no planted duplicates), in insertion order: it draws
    them from one seeded stream, one vector at a time, starting from the count it found (0 here)."""
    rng = np.random.default_rng(0)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        block = rng.standard_normal((stop - start, DIM)).astype(np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top(vectors: NDArray[np.float32], queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
    best = np.empty((len(queries), k), np.int64)
    for lo in range(0, len(queries), 64):
        sims = queries[lo : lo + 64] @ vectors.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        best[lo : lo + 64] = np.take_along_axis(top, order, axis=1)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", type=int, nargs="*", default=[100_000])
    parser.add_argument("--compression", default="none", help="WEAVIATE_VECTOR_COMPRESSION")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--fill-only", action="store_true", help="measure the insert rate only")
    args = parser.parse_args()

    os.environ["WEAVIATE_VECTOR_COMPRESSION"] = args.compression
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="clipsearch-recall-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        server = WeaviateServer(settings.weaviate_binary_path, Path(tmp) / "weaviate", Path(tmp))
        server.start()
        pid = server.process.pid
        assert pid is not None
        try:
            client = connect(settings.model_copy(update={"weaviate_url": server.grpc_url}))
            store = ImageStore(client, "bench-recall", ensure=True)
            name = "bench"
            from weaviate.classes.query import Filter, MetadataQuery

            where = Filter.by_property("collection").equal(name)
            rng = np.random.default_rng(987)
            for scale in args.scales:
                before = store.count(name)
                started = time.perf_counter()
                fill(store, name, DIM, scale)
                fill_s = time.perf_counter() - started
                rows.append(
                    (
                        f"{scale:,}: insert ({args.compression})",
                        f"{fill_s:.0f} s, {(scale - before) / fill_s:.0f} vectors/s",
                    )
                )
                rows.append((f"{scale:,}: Weaviate RSS after insert", f"{rss_mb(pid):.0f} MB"))
                print(*rows[-2:], sep="\n", flush=True)
                if args.fill_only:
                    continue
                vectors = regenerated(scale)
                sources = rng.choice(scale, args.queries, replace=False)
                noise = rng.standard_normal((args.queries, DIM)).astype(np.float32)
                noise /= np.linalg.norm(noise, axis=1, keepdims=True)
                queries = vectors[sources] + 0.48 * noise
                queries /= np.linalg.norm(queries, axis=1, keepdims=True)
                truth = exact_top(vectors, queries, K)
                del vectors
                hits = 0
                firsts = 0  # the exact nearest (the query's source) among the hits
                times: list[float] = []
                for q, want in zip(queries, truth, strict=True):
                    t0 = time.perf_counter()
                    result = store.collection.query.near_vector(
                        near_vector=q.tolist(),
                        limit=K,
                        filters=where,
                        return_properties=["filename"],
                        return_metadata=MetadataQuery(distance=True),
                    )
                    times.append((time.perf_counter() - t0) * 1000)
                    got = {int(str(o.properties["filename"])[3:-4]) for o in result.objects}
                    hits += len(got & set(want.tolist()))
                    firsts += int(want[0]) in got
                times.sort()
                rows.append(
                    (
                        f"{scale:,}: recall@{K} vs exact ({args.compression})",
                        f"{hits / (K * len(queries)):.4f} over {len(queries)} queries "
                        f"(the nearest found: {firsts / len(queries):.3f})",
                    )
                )
                rows.append(
                    (
                        f"{scale:,}: query p50 / p99",
                        f"{statistics.median(times):.2f} / {times[int(0.99 * len(times))]:.2f} ms",
                    )
                )
                rows.append((f"{scale:,}: Weaviate RSS after queries", f"{rss_mb(pid):.0f} MB"))
                print(*rows[-3:], sep="\n", flush=True)
            client.close()
        finally:
            server.stop()
    width = max(len(label) for label, _ in rows)
    print(f"\n{'measure':<{width}}  result ({os.cpu_count()} cores)")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
