"""Prometheus metrics that indexer code records: images indexed/failed and inference time per batch.

Indexer code calls the small functions below (`images_indexed`, `time_inference`, ...) and never imports
Flask or Celery. The metrics live in their own registry, `REGISTRY`, so that whoever exports them can
merge them with other sources without duplicate names:

- In a Celery worker the pool's child processes do the work, so the worker runs prometheus_client's
  multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set by workers/observability.py before
  prometheus_client is imported): every process writes its values to small mmap files in the worker's
  own directory under `<DATA_DIR>/metrics/workers/`, and the worker's exporter sums them.
- The API exports its own values (text and image queries run the model there too) and, when it shares
  DATA_DIR with the workers (the local stack does), the sum of every worker's files, each family
  labelled `source="api"` or `source="workers"` (see `IndexerCollector`).
"""

from __future__ import annotations

import contextlib
import glob
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

IMAGES_INDEXED = Counter(
    "clipsearch_images_indexed", "Images embedded and written to the vector store", registry=REGISTRY
)
IMAGES_FAILED = Counter(
    "clipsearch_images_failed",
    "Images that could not be indexed (undecodable, too large, ...)",
    registry=REGISTRY,
)
IMAGES_DUPLICATE = Counter(
    "clipsearch_images_duplicate",
    "Images skipped because the same bytes were already indexed",
    registry=REGISTRY,
)
INFERENCE_SECONDS = Histogram(
    "clipsearch_inference_seconds",
    "Wall time of one model inference call (one batch)",
    ["encoder"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
INFERENCE_BATCH_ITEMS = Histogram(
    "clipsearch_inference_batch_items",
    "Items (images or texts) in one model inference call",
    ["encoder"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)


# Family names of the metrics above, as prometheus_client's multiprocess files name them.
INDEXER_METRIC_NAMES = frozenset(
    {
        "clipsearch_images_indexed",
        "clipsearch_images_failed",
        "clipsearch_images_duplicate",
        "clipsearch_inference_seconds",
        "clipsearch_inference_batch_items",
    }
)


def images_indexed(count: int = 1) -> None:
    if count > 0:
        IMAGES_INDEXED.inc(count)


def images_failed(count: int = 1) -> None:
    if count > 0:
        IMAGES_FAILED.inc(count)


def images_duplicate(count: int = 1) -> None:
    if count > 0:
        IMAGES_DUPLICATE.inc(count)


def observe_inference(encoder: str, seconds: float, batch_items: int) -> None:
    """Record one inference call of `encoder` ("image" or "text") over `batch_items` inputs."""
    INFERENCE_SECONDS.labels(encoder=encoder).observe(seconds)
    INFERENCE_BATCH_ITEMS.labels(encoder=encoder).observe(batch_items)


@contextlib.contextmanager
def time_inference(encoder: str, batch_items: int) -> Iterator[None]:
    """`with time_inference("image", len(batch)): session.run(...)`"""
    started = time.perf_counter()
    try:
        yield
    finally:
        observe_inference(encoder, time.perf_counter() - started, batch_items)


def _relabel(families: Iterable[Metric], source: str, into: dict[str, Metric]) -> None:
    for family in families:
        merged = into.get(family.name)
        if merged is None:
            merged = into[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
        for sample in family.samples:
            merged.samples.append(sample._replace(labels={**sample.labels, "source": source}))


class IndexerCollector(Collector):
    """This process's indexer metrics plus, when `worker_root` is given, the sum of every worker's.

    The worker files are read at scrape time, so a worker that exits leaves its totals behind and a
    worker that starts later shows up without any registration. When the API itself runs in
    multiprocess mode (several gunicorn processes), its values come from `api_dir` instead of `local`.
    """

    def __init__(
        self,
        local: CollectorRegistry | None = REGISTRY,
        worker_root: Path | None = None,
        api_dir: Path | None = None,
    ) -> None:
        self.local = local
        self.worker_root = worker_root
        self.api_dir = api_dir

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        if self.local is not None:
            _relabel(self.local.collect(), "api", families)
        if self.api_dir is not None:
            api = merge_files(glob.glob(str(self.api_dir / "*.db")))
            _relabel((f for f in api if f.name in INDEXER_METRIC_NAMES), "api", families)
        if self.worker_root is not None:
            _relabel(merge_files(glob.glob(str(self.worker_root / "*" / "*.db"))), "workers", families)
        return list(families.values())


def merge_files(files: list[str]) -> list[Metric]:
    """Sum prometheus_client multiprocess files (a process may clean up mid-scrape: skip it)."""
    if not files:
        return []
    with contextlib.suppress(FileNotFoundError):
        return list(MultiProcessCollector.merge(files, accumulate=True))
    return []
