"""Prometheus metrics at /metrics.

- `clipsearch_http_request_duration_seconds{method,route,status}`: a histogram per URL rule (the rule,
  e.g. `/images/<image_id>`, not the concrete path, so ids do not explode the label set). Every label
  is bounded whatever clients send: a method outside the standard ones is "other", a path that matches
  no rule is "<unmatched>", a status outside 100-599 is "other".
- `clipsearch_queue_depth{queue}` and `clipsearch_jobs{state}`: read from Redis at scrape time by a
  custom collector, so they are right whichever process changed them. Jobs by state come from counters
  that the job store keeps as states change (queued and running now; completed, failed and cancelled
  within JOB_TTL_S), so a scrape costs a fixed handful of Redis commands however many jobs there were.
- `clipsearch_images_indexed/failed/duplicate_total`, `clipsearch_inference_seconds`: defined in
  indexer/metrics.py; this process's values plus every local worker's (see IndexerCollector).
- process_* and python_* of the API process.

Each app gets its own registry, so that several apps in one process (tests) do not collide. With several
API processes (gunicorn --workers N), PROMETHEUS_MULTIPROC_DIR in their environment switches to
prometheus_client's multiprocess mode: every scrape then reports the sum over the processes.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from indexer.metrics import INDEXER_METRIC_NAMES, IndexerCollector, merge_files
from indexer.metrics import REGISTRY as INDEXER_REGISTRY
from search_api.services import Services

log = logging.getLogger(__name__)

QUEUE = "clipsearch"
# kombu's Redis transport keeps messages of priority p>0 in "<queue>\x06\x16<p>" lists.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
EXTENSION_KEY = "clipsearch.metrics"

bp = Blueprint("metrics", __name__)

# Methods that get their own label value; anything else a client invents is counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER = "other"
UNMATCHED = "<unmatched>"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


def queue_keys(queue: str = QUEUE) -> list[str]:
    return [queue] + [f"{queue}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS]


class StackCollector(Collector):
    """Queue depth and jobs by state, computed from Redis when Prometheus scrapes."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterable[Metric]:
        client = self.svc.redis
        up = GaugeMetricFamily("clipsearch_redis_up", "1 when Redis answered this scrape")
        try:
            pipe = client.pipeline()
            for key in queue_keys():
                pipe.llen(key)
            depth = sum(int(n) for n in pipe.execute())
            counts = self.svc.jobs.count_by_state()  # a few commands, however many jobs
        except redis.RedisError as exc:
            log.warning("metrics: redis unavailable: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        queue = GaugeMetricFamily("clipsearch_queue_depth", "Tasks waiting in the queue", labels=["queue"])
        queue.add_metric([QUEUE], depth)
        jobs = GaugeMetricFamily("clipsearch_jobs", "Jobs by state", labels=["state"])
        for state, count in counts.items():
            jobs.add_metric([state], count)
        return [up, queue, jobs]


def multiprocess_dir() -> Path | None:
    """PROMETHEUS_MULTIPROC_DIR when the API runs in prometheus_client's multiprocess mode."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if value and getattr(values.ValueClass, "_multiprocess", False) and Path(value).is_dir():
        return Path(value)
    return None


class ApiFilesCollector(Collector):
    """The API's own metrics summed over all its processes' files (indexer metrics excluded: the
    IndexerCollector labels those)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        merged = merge_files(glob.glob(str(self.path / "*.db")))
        return [family for family in merged if family.name not in INDEXER_METRIC_NAMES]


def build_registry(svc: Services) -> tuple[CollectorRegistry, Histogram]:
    """One registry per app. With several API processes (gunicorn --workers N), set
    PROMETHEUS_MULTIPROC_DIR to an empty directory in their environment: each process then writes its
    values there and every scrape, whichever process answers it, reports the sum."""
    registry = CollectorRegistry(auto_describe=False)
    shared = multiprocess_dir()
    if shared is None:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        registry.register(IndexerCollector(INDEXER_REGISTRY, svc.settings.worker_metrics_root))
    else:
        registry.register(ApiFilesCollector(shared))
        registry.register(IndexerCollector(None, svc.settings.worker_metrics_root, api_dir=shared))
    registry.register(StackCollector(svc))
    latency = Histogram(
        "clipsearch_http_request_duration_seconds",
        "Time to answer an HTTP request, by URL rule",
        ["method", "route", "status"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
        # In multiprocess mode the values live in files, read by ApiFilesCollector.
        registry=registry if shared is None else None,
    )
    return registry, latency


def install_metrics(app: Flask, svc: Services) -> None:
    registry, latency = build_registry(svc)
    app.extensions[EXTENSION_KEY] = registry

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            route = request.url_rule.rule if request.url_rule else UNMATCHED
            latency.labels(method_label(request.method), route, status_label(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response

    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics() -> Response:
    registry: CollectorRegistry = current_app.extensions[EXTENSION_KEY]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
