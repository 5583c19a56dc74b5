#!/usr/bin/env python
"""End-to-end ingest throughput and text-query latency over HTTP, against the real local stack.

    python benchmarks/ingest.py                     # 96 JPEGs, fp32 and int8, queries at 10k and 100k
    python benchmarks/ingest.py --images 64 --scales 10000

For each precision: the raw ONNX session's images/s (batch = INGEST_CHUNK_SIZE, preprocessed tensors, no
decode) is measured first in this process, then N generated JPEGs (640 to 2048 px, from benchmarks/encoder)
go through HTTP upload, the Redis queue and one Celery worker until the job is complete and searchable. The
ratio e2e / raw is the goal (>= 0.9). Both use the same ONNX thread count, one at a time.

Query latency: synthetic unit vectors (standard normal, normalised, seeded) are written straight into the
collection's Weaviate objects until it holds 10k, then 100k images; then POST /search/text is timed for
distinct texts (encoder + Weaviate) and for repeated texts (text-embedding cache hit).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.encoder import DEFAULT_BIG, make_jpegs  # noqa: E402
from clipsearch.processes import free_port  # noqa: E402
from clipsearch.stack import LocalStack  # noqa: E402
from indexer.model.encoder import load_encoder  # noqa: E402
from indexer.model.files import model_id_for_dir, quantized_dir, tiny_model_dir  # noqa: E402
from indexer.model.quantize import quantize_model_dir  # noqa: E402
from indexer.settings import Settings  # noqa: E402
from indexer.store.connection import connect  # noqa: E402
from indexer.store.images import ImageRecord, ImageStore  # noqa: E402


def raw_images_per_s(settings: Settings, batch: int, seconds: float = 8.0) -> float:
    encoder = load_encoder(settings)
    size = encoder.image_size
    tensor = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    encoder.encode_preprocessed(tensor)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        encoder.encode_preprocessed(tensor)
        done += batch
    rate = done / (time.perf_counter() - start)
    encoder.close()
    return rate


def ingest_images_per_s(base: str, jpegs: list[bytes], batch: int) -> float:
    """Upload one request per chunk (as `clipsearch index` streams a directory), so the worker starts on
    the first chunk while the rest upload; the clock stops once every image is indexed and searchable."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    requests.post(f"{base}/collections", json={"name": name}, timeout=60).raise_for_status()
    start = time.perf_counter()
    jobs = []
    for first in range(0, len(jpegs), batch):
        files = [
            ("files", (f"b{i}.jpg", jpegs[i], "image/jpeg"))
            for i in range(first, min(first + batch, len(jpegs)))
        ]
        response = requests.post(f"{base}/collections/{name}/images", files=files, timeout=300)
        jobs.append(response.json()["job_id"])
    done = 0
    for job in jobs:
        while (report := requests.get(f"{base}/jobs/{job}", timeout=60).json())["state"] not in {
            "completed",
            "failed",
        }:
            time.sleep(0.05)
        done += report["done"]
    hits = requests.post(
        f"{base}/search/text", json={"collection": name, "query": "x", "limit": 1}, timeout=60
    )
    assert hits.json()["count"] == 1
    elapsed = time.perf_counter() - start
    assert done == len(jpegs), (done, len(jpegs))
    return len(jpegs) / elapsed


def fill(settings: Settings, collection: str, model_id: str, dim: int, target: int) -> None:
    """Insert synthetic unit vectors until the collection holds `target` objects."""
    client = connect(settings)
    try:
        store = ImageStore(client, model_id)
        have = store.count(collection)
        rng = np.random.default_rng(have)
        now = datetime.now(UTC)
        with store.collection.batch.fixed_size(batch_size=1000, concurrent_requests=2) as batch:
            for i in range(have, target):
                vector = rng.standard_normal(dim).astype(np.float32)
                vector /= np.linalg.norm(vector)
                record = ImageRecord(
                    id=str(uuid.uuid4()),
                    collection=collection,
                    filename=f"syn{i}.jpg",
                    sha256=f"{i:064x}",
                    format="jpeg",
                    width=1,
                    height=1,
                    ingested_at=now,
                )
                from indexer.store.images import to_properties

                batch.add_object(properties=to_properties(record), uuid=record.id, vector=vector.tolist())
        assert store.count(collection) >= target, "synthetic insert fell short"
    finally:
        client.close()


def query_latency(base: str, collection: str, n: int, distinct: bool, tag: str = "") -> tuple[float, float]:
    times = []
    for i in range(n):
        text = f"a photo of thing number {i} of {tag}" if distinct else "a photo of a dog on a beach"
        t0 = time.perf_counter()
        response = requests.post(
            f"{base}/search/text", json={"collection": collection, "query": text, "limit": 20}, timeout=60
        )
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument(
        "--model-dir", type=Path, default=DEFAULT_BIG if DEFAULT_BIG.is_dir() else tiny_model_dir()
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--scales", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--precisions", nargs="*", default=["fp32", "int8"])
    args = parser.parse_args()

    jpegs = make_jpegs(args.images)
    rows: list[tuple[str, str, str]] = []
    for precision in args.precisions:
        with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as tmp:
            env = {
                "DATA_DIR": tmp,
                "MODEL_DIR": str(args.model_dir),
                "MODEL_PRECISION": precision,
                "ONNX_THREADS": str(args.threads),
                "API_PORT": str(free_port()),
            }
            os.environ.update(env)
            settings = Settings()
            if precision == "int8":
                qdir = quantized_dir(settings, model_id_for_dir(args.model_dir, settings))
                if not (qdir / "visual" / "model.onnx").is_file():
                    quantize_model_dir(args.model_dir, qdir)
            raw = raw_images_per_s(settings, settings.ingest_chunk_size)
            stack = LocalStack(settings)
            stack.start()
            try:
                stack.wait_healthy()
                e2e = ingest_images_per_s(stack.api_url, jpegs, settings.ingest_chunk_size)
                rows.append(
                    (
                        f"ingest {precision}: raw session, batch {settings.ingest_chunk_size}",
                        f"{raw:.1f}",
                        "img/s",
                    )
                )
                rows.append(
                    (
                        f"ingest {precision}: HTTP upload -> searchable, {len(jpegs)} JPEGs",
                        f"{e2e:.1f}",
                        f"img/s ({e2e / raw:.2f} of raw)",
                    )
                )
                if precision == args.precisions[0] and args.scales:
                    name = f"scale-{uuid.uuid4().hex[:6]}"
                    requests.post(
                        f"{stack.api_url}/collections", json={"name": name}, timeout=60
                    ).raise_for_status()
                    info = requests.get(f"{stack.api_url}/collections/{name}", timeout=60).json()
                    dim = load_encoder(settings).dim
                    stack_settings = settings.model_copy(
                        update={
                            "weaviate_url": stack.weaviate_url,
                            "weaviate_grpc_port": stack.weaviate_grpc_port,
                        }
                    )
                    for scale in args.scales:
                        t0 = time.perf_counter()
                        fill(stack_settings, name, info["model_id"], dim, scale)
                        fill_s = time.perf_counter() - t0
                        p50, p99 = query_latency(
                            stack.api_url, name, args.queries, distinct=True, tag=str(scale)
                        )
                        c50, c99 = query_latency(stack.api_url, name, args.queries, distinct=False)
                        rows.append(
                            (
                                f"text query at {scale:,} images (new text)",
                                f"{p50:.1f} / {p99:.1f}",
                                "ms p50 / p99",
                            )
                        )
                        rows.append(
                            (
                                f"text query at {scale:,} images (cached text)",
                                f"{c50:.1f} / {c99:.1f}",
                                f"ms p50 / p99 (synthetic fill {fill_s:.0f} s)",
                            )
                        )
            finally:
                stack.stop()

    print(f"\nmodel: {args.model_dir}  threads: {args.threads}  cpu: {os.cpu_count()}")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>14}  unit")
    for label, value, unit in rows:
        print(f"{label:<{width}}  {value:>14}  {unit}")


if __name__ == "__main__":
    main()
