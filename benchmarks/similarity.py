#!/usr/bin/env python
"""The cost of the similarity network (`duplicates`, `edges`) at scale: exact numpy against one
nearest-neighbour query per image through Weaviate.

    python benchmarks/similarity.py                            # 10k synthetic vectors
    python benchmarks/similarity.py --scales 10000 100000      # and 100k (fill: minutes)
    python benchmarks/similarity.py --scales 100000 --no-exact # the neighbour path only

One Weaviate node starts on loopback in a temporary directory; one collection of the image schema is
filled with synthetic unit vectors (benchmarks/synthetic.py, dimension 512, every 50th a near-duplicate
of the one before, cosine about 0.97) up to each scale. At each scale, for the duplicate groups at
cosine >= 0.9 (the pairs, then their connected components, as `GET /collections/<name>/duplicates`):

- time and this process's peak RSS above its level before the call (sampled every 20 ms);
- Weaviate's RSS after the run;
- for the neighbour path, its recall of the exact pairs and whether the groups are the same.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.synthetic import fill  # noqa: E402
from benchmarks.table import print_table  # noqa: E402
from clipsearch.weaviate_server import WeaviateServer  # noqa: E402
from indexer.search.similarity import (  # noqa: E402
    SimilarityGraph,
    collection_vectors,
    exact_graph,
    neighbour_graph,
)
from indexer.settings import Settings  # noqa: E402
from indexer.store.connection import connect  # noqa: E402
from indexer.store.images import ImageStore  # noqa: E402

T = TypeVar("T")
DIM = 512
MODEL_ID = "bench-similarity"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def measured(fn: Callable[[], T]) -> tuple[T, float, float]:
    """fn's result, its seconds, and the peak RSS (MB) of this process above the level before it."""
    base = rss_mb()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
    return result, elapsed, max(peak[0], rss_mb()) - base


def pair_set(graph: SimilarityGraph) -> set[frozenset[str]]:
    return {frozenset((graph.ids[a], graph.ids[b])) for a, b in zip(graph.rows, graph.cols, strict=True)}


def group_set(graph: SimilarityGraph) -> set[frozenset[str]]:
    return {frozenset(graph.ids[m] for m in members) for members in graph.components()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", type=int, nargs="*", default=[10_000])
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--neighbours", type=int, default=Settings().similarity_neighbours)
    parser.add_argument(
        "--concurrency", type=int, nargs="*", default=[Settings().similarity_query_concurrency]
    )
    parser.add_argument("--no-exact", action="store_true", help="skip the exact path (slow at 100k)")
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="clipsearch-similarity-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        server = WeaviateServer(settings.weaviate_binary_path, Path(tmp) / "weaviate", Path(tmp))
        server.start()
        try:
            client = connect(settings.model_copy(update={"weaviate_url": server.grpc_url}))
            store = ImageStore(client, MODEL_ID, ensure=True)
            name = "bench"
            for scale in args.scales:
                started = time.perf_counter()
                before = store.count(name)
                fill(store, name, DIM, scale, duplicate_every=50)
                fill_s = time.perf_counter() - started
                rate = (scale - before) / fill_s if fill_s else 0.0
                rows.append((f"{scale:,}: synthetic fill", f"{fill_s:.0f} s ({rate:.0f} vectors/s)"))
                exact: SimilarityGraph | None = None
                if not args.no_exact:

                    def run_exact() -> SimilarityGraph:
                        graph = exact_graph(collection_vectors(store, name, 10**9), args.threshold)
                        graph.components()
                        return graph

                    full, secs, mem = measured(run_exact)
                    exact = full
                    rows.append(
                        (
                            f"{scale:,}: exact (numpy)",
                            f"{secs:.1f} s, +{mem:.0f} MB, {len(full.scores)} pairs, "
                            f"{len(full.components())} groups",
                        )
                    )
                for concurrency in args.concurrency:

                    def run_neighbours(c: int = concurrency) -> SimilarityGraph:
                        graph = neighbour_graph(
                            store, name, args.threshold, neighbours=args.neighbours, concurrency=c
                        )
                        graph.components()
                        return graph

                    near, secs, mem = measured(run_neighbours)
                    quality = ""
                    if exact is not None:
                        want = pair_set(exact)
                        recall = len(want & pair_set(near)) / len(want) if want else 1.0
                        same = group_set(near) == group_set(exact)
                        quality = f", pair recall {recall:.4f}, groups {'identical' if same else 'DIFFER'}"
                    rows.append(
                        (
                            f"{scale:,}: neighbours (k={args.neighbours}, {concurrency} in flight)",
                            f"{secs:.1f} s ({scale / secs:.0f} images/s), +{mem:.0f} MB, "
                            f"{len(near.scores)} pairs, {len(near.components())} groups{quality}",
                        )
                    )
                rows.append((f"{scale:,}: Weaviate RSS", f"{rss_mb(server.process.pid or 'self'):.0f} MB"))
                print("\n".join(f"{label}: {value}" for label, value in rows[-3:]), flush=True)
            client.close()
        finally:
            server.stop()
    print()
    print_table(("measure", f"result (threshold {args.threshold}, {os.cpu_count()} cores)"), rows)


if __name__ == "__main__":
    main()
