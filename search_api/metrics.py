"""Prometheus metrics at /metrics.

- `clipsearch_http_request_duration_seconds{method,route,status}`: a histogram per URL rule (the rule,
  e.g. `/images/<image_id>`, not the concrete path, so ids do not explode the label set).
- `clipsearch_queue_depth{queue}` and `clipsearch_jobs{state}`: read from Redis at scrape time by a
  custom collector, so they are right whichever process changed them.
- `clipsearch_images_indexed/failed/duplicate_total`, `clipsearch_inference_seconds`: defined in
  indexer/metrics.py; this process's values plus every local worker's (see IndexerCollector).
- process_* and python_* of the API process.

Each app gets its own registry, so that several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from indexer.metrics import REGISTRY as INDEXER_REGISTRY
from indexer.metrics import IndexerCollector
from search_api.services import Services

log = logging.getLogger(__name__)

QUEUE = "clipsearch"
# kombu's Redis transport keeps messages of priority p>0 in "<queue>\x06\x16<p>" lists.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
EXTENSION_KEY = "clipsearch.metrics"

bp = Blueprint("metrics", __name__)


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
            counts = _job_counts(client)
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


def _job_counts(client: redis.Redis) -> dict[str, int]:
    try:
        from indexer.jobs import JobStore
    except ImportError:  # pragma: no cover - only while the job store is not there
        return {}
    return JobStore(client).count_by_state()


def build_registry(svc: Services) -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(IndexerCollector(INDEXER_REGISTRY, svc.settings.worker_metrics_root))
    registry.register(StackCollector(svc))
    latency = Histogram(
        "clipsearch_http_request_duration_seconds",
        "Time to answer an HTTP request, by URL rule",
        ["method", "route", "status"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
        registry=registry,
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
            route = request.url_rule.rule if request.url_rule else "<unmatched>"
            latency.labels(request.method, route, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response

    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics() -> Response:
    registry: CollectorRegistry = current_app.extensions[EXTENSION_KEY]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
