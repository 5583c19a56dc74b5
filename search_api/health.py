"""Readiness of each part the service needs, with versions."""

from __future__ import annotations

import time
from typing import Any

import redis

from indexer import __version__
from indexer.jobs.heartbeat import live_workers
from indexer.store.connection import weaviate_status
from indexer.supervision import health_view, read_status, status_path
from search_api.services import Services


def _weaviate(svc: Services) -> dict[str, Any]:
    try:
        client = svc.weaviate
    except Exception as exc:  # /health reports a part that cannot even connect; it must not fail itself
        return {"ready": False, "error": str(exc)}
    return weaviate_status(client)


def _redis(svc: Services) -> dict[str, Any]:
    try:
        info = svc.redis.info("server")
    except redis.RedisError as exc:
        return {"ready": False, "error": str(exc)}
    return {"ready": True, "version": info.get("redis_version")}


def _workers(svc: Services) -> dict[str, Any]:
    """The workers whose heartbeat in Redis has not expired (indexer.jobs.heartbeat): two Redis round trips,
    never a broadcast ping that waits for answers, so /health stays fast however many probe it."""
    try:
        names = live_workers(svc.redis)
    except redis.RedisError as exc:
        return {"ready": False, "count": 0, "error": str(exc)}
    return {"ready": bool(names), "count": len(names), "names": names}


def _model(svc: Services) -> dict[str, Any]:
    try:
        status = dict(svc.encoder_status())
    except Exception as exc:  # as above: a model that cannot load is reported, not raised
        return {"ready": False, "error": str(exc)}
    status.setdefault("ready", True)
    return status


def public_view(report: dict[str, Any]) -> dict[str, Any]:
    """What /health tells a caller without a key (issue 23, item 12): up or down, as a whole and per
    part (the page's status pill names the parts that are down), and nothing else: no versions, paths,
    host or node names, worker names or exception text; only whether the model is the bundled test model,
    whose results are not semantic (issue 24)."""
    parts = report.get("parts", {})
    view: dict[str, Any] = {
        "status": report["status"],
        "parts": {name: {"ready": bool(p.get("ready"))} for name, p in parts.items()},
    }
    # Whether results mean anything: the page says so when the service runs on the tiny test model.
    if "model" in view["parts"] and "is_test_model" in parts["model"]:
        view["parts"]["model"]["is_test_model"] = bool(parts["model"]["is_test_model"])
    return view


def health_report(svc: Services) -> tuple[dict[str, Any], bool]:
    """Every part's readiness (the status code: 200 when all are ready, else 503) and, under
    `clipsearch up`, its supervisor's state (restarts per part, parts given up). `status` is "ok",
    "degraded" (the supervisor gave a part up: the rest still serves), or "unavailable" (a part is not
    ready)."""
    parts = {
        "weaviate": _weaviate(svc),
        "redis": _redis(svc),
        "workers": _workers(svc),
        "model": _model(svc),
    }
    ok = all(part.get("ready") for part in parts.values())
    report: dict[str, Any] = {"status": "ok" if ok else "unavailable", "version": __version__, "parts": parts}
    published = read_status(status_path(svc.settings.data_dir))
    if published is not None:
        supervisor = health_view(published, time.time())
        report["supervisor"] = supervisor
        if ok and supervisor["degraded"]:
            report["status"] = "degraded"
    return report, ok
