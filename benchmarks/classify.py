#!/usr/bin/env python
"""Zero-shot classification throughput: stored vectors against class sets, and a bulk-label job.

    python benchmarks/classify.py                            # 10,000 images, 1,000 classes, dim 512
    python benchmarks/classify.py --images 2000 --classes 100 --refs 3

Starts its own LocalStack (Weaviate, Redis, one Celery worker; no API) in a temporary directory and
inserts synthetic unit vectors straight into Weaviate: ``--classes`` random Gaussian centroids
(normalised), and each image ``normalise(centroid[i % classes] + noise)`` with noise ~ N(0, 0.6^2/dim)
per component (cosine to its own centroid ~0.86, to the others ~0). The class set holds the centroids as
raw references (with ``--refs`` > 1, extra references per class are further noisy copies, exercising the
max-over-references path). Because every image's class is known, the table also reports accuracy: a
check that the numbers measure correct work.

Rows:
- score (numpy): `class_scores` over all stored vectors in memory (BLAS, blocks of 2,048 queries).
- predict top-5: the API's path per query (ranking, softmax, margin and the matching reference).
- load references: reading the class set's reference vectors from Weaviate (the first scorer of a
  version; later ones come from the service's cache).
- classify one stored id: `ClassifyService.classify`, the use case behind POST /classify (record,
  binding and vector: three Weaviate queries), p50 over 200 calls.
- bulk-label job: the real job through Celery and Weaviate (plan, chunks of LABEL_CHUNK_SIZE, fetch with
  vectors, score, patch labels, per-image outcomes in Redis), first run (every label written) and a
  re-run with nothing to change (no writes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.table import print_table  # noqa: E402
from clipsearch.stack import LocalStack  # noqa: E402
from indexer.classify.references import ClassDef  # noqa: E402
from indexer.classify.scoring import class_scores  # noqa: E402
from indexer.classify.store import Kind  # noqa: E402
from indexer.jobs.store import JobStore  # noqa: E402
from indexer.model.files import tiny_model_dir  # noqa: E402
from indexer.services.backends import Backends  # noqa: E402
from indexer.services.classify import ClassifyService  # noqa: E402
from indexer.services.jobs import JobsService  # noqa: E402
from indexer.settings import Settings  # noqa: E402
from indexer.store.collections import create_collection  # noqa: E402
from indexer.store.connection import connect  # noqa: E402
from indexer.store.images import ImageRecord, ImageStore  # noqa: E402
from indexer.store.schema import image_uuid  # noqa: E402
from workers.celery_factory import make_celery  # noqa: E402
from workers.queue import CeleryJobQueue  # noqa: E402

MODEL_ID = "bench-synthetic"


@dataclass
class StubEncoder:
    """Raw references need no encoding; this carries the model id, dimension and logit scale only."""

    model_id: str
    dim: int
    logit_scale: float = 100.0
    logit_bias: float | None = None
    image_size: int = 224

    def encode_texts(self, texts: object) -> tuple[np.ndarray, list[bool]]:
        raise NotImplementedError

    def encode_images(self, images: object) -> np.ndarray:
        raise NotImplementedError


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--refs", type=int, default=1, help="references per class")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=1000, help="LABEL_CHUNK_SIZE")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centroids = unit(rng.standard_normal((args.classes, args.dim)))
    noise = 0.6 / np.sqrt(args.dim)
    truth = np.arange(args.images) % args.classes
    images = unit(centroids[truth] + rng.normal(0, noise, (args.images, args.dim)))
    extra = [unit(centroids + rng.normal(0, noise, centroids.shape)) for _ in range(args.refs - 1)]

    tmp = Path(tempfile.mkdtemp(prefix="clipsearch-bench-"))
    os.environ.update({"MODEL_DIR": str(tiny_model_dir()), "HF_HUB_OFFLINE": "1", "ONNX_THREADS": "1"})
    for key in ("WEAVIATE_URL", "REDIS_URL"):
        os.environ.pop(key, None)
    os.environ["LABEL_CHUNK_SIZE"] = str(args.chunk)
    settings = Settings(data_dir=tmp, label_chunk_size=args.chunk)
    stack = LocalStack(settings, api=False, worker=True)
    rows: list[tuple[str, str, str]] = []
    stack.start()
    try:
        live = settings.model_copy(
            update={
                "redis_url": stack.redis_url,
                "weaviate_url": stack.weaviate_url,
                "weaviate_grpc_port": stack.weaviate_grpc_port,
            }
        )
        client = connect(live)
        import redis

        jobs = JobStore(redis.Redis.from_url(stack.redis_url))
        # The same use cases as the API (indexer/services/classify.py): create, score, label (plan,
        # record, enqueue through the port), over a stand-in encoder of the synthetic model.
        encoder = StubEncoder(MODEL_ID, args.dim)
        backends = Backends(live, encoder=cast(Any, encoder))
        backends.ensure_schema()
        classify = ClassifyService(backends, JobsService(backends.jobs, CeleryJobQueue(make_celery(live))))
        create_collection(client, "bench", MODEL_ID)
        store = ImageStore(client, MODEL_ID)
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        for lo in range(0, args.images, 1000):
            hi = min(args.images, lo + 1000)
            records = [
                ImageRecord(
                    id=image_uuid("bench", f"{i:064x}"),
                    collection="bench",
                    filename=f"img{i}.jpg",
                    sha256=f"{i:064x}",
                    format="jpeg",
                    width=640,
                    height=480,
                    ingested_at=now,
                )
                for i in range(lo, hi)
            ]
            errors = store.insert(records, images[lo:hi])
            assert not errors, errors
        insert_s = time.perf_counter() - t0
        rows.append(
            (
                f"insert {args.images:,} synthetic vectors (setup)",
                f"{insert_s:.2f} s",
                f"{args.images / insert_s:,.0f} img/s",
            )
        )

        classes = {
            f"class{c:04d}": ClassDef(vectors=[centroids[c].tolist()] + [e[c].tolist() for e in extra])
            for c in range(args.classes)
        }
        t0 = time.perf_counter()
        classify.create_class_set("bench-set", "bench", classes=classes)
        rows.append(
            (
                f"create class set: {args.classes:,} classes x {args.refs} refs",
                f"{time.perf_counter() - t0:.2f} s",
                "",
            )
        )
        t0 = time.perf_counter()
        scorer = classify.scorer(Kind.CLASS_SET, "bench-set")
        load_s = time.perf_counter() - t0
        rows.append((f"load {len(scorer.refs):,} references from Weaviate", f"{load_s * 1000:.0f} ms", ""))

        class_scores(images[:100], scorer.references)  # warm-up
        best = []
        for _ in range(3):
            t0 = time.perf_counter()
            scores, _ = class_scores(images, scorer.references)
            best.append(time.perf_counter() - t0)
        score_s = min(best)
        accuracy = float((np.argmax(scores, axis=1) == truth).mean())
        rows.append(
            (
                f"score {args.images:,} x {args.classes:,} classes (numpy, best of 3)",
                f"{score_s * 1000:.0f} ms",
                f"{args.images / score_s:,.0f} items/s, accuracy {accuracy:.4f}",
            )
        )
        sample = images[:1000]
        t0 = time.perf_counter()
        scorer.predict(sample, top_k=5)
        predict_s = time.perf_counter() - t0
        rows.append(
            (
                "predict top-5 with explanations (1,000 queries)",
                f"{predict_s * 1000:.0f} ms",
                f"{len(sample) / predict_s:,.0f} items/s",
            )
        )

        sample_id = image_uuid("bench", f"{0:064x}")
        took = []
        for _ in range(200):
            t0 = time.perf_counter()
            done = classify.classify("bench-set", image_id=sample_id, top_k=5)
            took.append(time.perf_counter() - t0)
        assert done.predictions[0].label == f"class{truth[0]:04d}"
        rows.append(
            (
                "classify one stored id (service, warm), p50 of 200",
                f"{np.median(took) * 1000:.1f} ms",
                "",
            )
        )

        for run in ("first run: every label written", "re-run: nothing changes"):
            t0 = time.perf_counter()
            job_id = classify.label_class_set("bench-set", threshold=None, multi_label=False).job_id
            plan_s = time.perf_counter() - t0
            while jobs.get(job_id, with_errors=False).state.value not in {"completed", "failed", "cancelled"}:
                time.sleep(0.05)
            job_s = time.perf_counter() - t0
            report = jobs.get(job_id)
            assert report.done == args.images and report.failed == 0, report
            rows.append(
                (
                    f"bulk-label job, {args.images:,} images ({run})",
                    f"{job_s:.2f} s",
                    f"{args.images / job_s:,.0f} img/s (plan {plan_s:.2f} s)",
                )
            )

        labelled = sum(
            1
            for i in rng.choice(args.images, 200, replace=False)
            if store.get(image_uuid("bench", f"{int(i):064x}"))[0].labels == [f"class{truth[i]:04d}"]
        )
        rows.append(("labels checked on 200 random images", f"{labelled}/200 correct", ""))
        client.close()
        backends.close()
    finally:
        stack.stop()

    print(
        f"\n{args.images:,} images, {args.classes:,} classes, {args.refs} ref(s)/class, dim {args.dim}, "
        f"{os.cpu_count()} CPUs, label chunk {args.chunk}\n"
    )
    print_table(("step", "time", "rate"), rows, markdown=True)


if __name__ == "__main__":
    main()
