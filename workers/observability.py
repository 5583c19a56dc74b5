"""Celery signal hooks: JSON logs, the request id that follows a job, and the worker's metrics.

Request id: `before_task_publish` (in whichever process sends a task: the API, or a task that fans out)
copies the current request id into a message header; `task_prerun` in the worker restores it into the
context variable that every log line reads, with the task id and name beside it.

Metrics: the task bodies run in the prefork pool's child processes, so the worker uses
prometheus_client's multiprocess mode. `import_modules` (sent by a starting worker just before it
imports the task modules, and with them prometheus_client) points PROMETHEUS_MULTIPROC_DIR at a
directory of its own, `<DATA_DIR>/metrics/workers/<host>-<pid>/`, where each process of that worker
writes its values;
`worker_init` then serves their sum on WORKER_METRICS_PORT (loopback) when that is set. The API's
/metrics also reads every worker directory under DATA_DIR (indexer/metrics.py). Directories left by
workers that are gone (same host, pid no longer alive) are removed at start; their counters reset, as
Prometheus expects of a restarted process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from celery import Celery, signals

from indexer.logs import (
    TASK_HEADER,
    bind_context,
    configure_logging,
    get_request_id,
    reset_context,
    reset_request_id,
    set_request_id,
)
from indexer.settings import Settings

log = logging.getLogger(__name__)
task_log = logging.getLogger("clipsearch.task")

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_tokens: dict[str, tuple[Any, Any]] = {}
_started: dict[str, float] = {}
_state: dict[str, Any] = {"connected": False, "settings": None}


# -- request id across the queue -------------------------------------------------------------------
def _add_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    rid = get_request_id()
    if rid and headers is not None and TASK_HEADER not in headers:
        headers[TASK_HEADER] = rid


def task_request_id(task: Any) -> str | None:
    """The request id that the message carried (custom headers land on task.request)."""
    request = getattr(task, "request", None)
    if request is None:
        return None
    value = getattr(request, TASK_HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get(TASK_HEADER)
    return str(value) if value else None


def _restore_request_id(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    if task_id is None:
        return
    rid = task_request_id(task)
    name = getattr(task, "name", None)
    _tokens[task_id] = (set_request_id(rid), bind_context(task_id=task_id, task=name))
    _started[task_id] = time.perf_counter()
    task_log.info("task started", extra={"task_args": _short_args(args)})


def _short_args(args: Any) -> list[Any]:
    """Task arguments for the log: ids and indexes, never bulky payloads."""
    return [
        a if isinstance(a, int | float) or (isinstance(a, str) and len(a) <= 80) else "…" for a in args or ()
    ]


def _forget_request_id(task_id: str | None = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id or "", None)
    if started is not None:
        task_log.info(
            "task finished",
            extra={"state": state, "duration_ms": round((time.perf_counter() - started) * 1000, 2)},
        )
    tokens = _tokens.pop(task_id or "", None)
    if tokens is not None:
        rid_token, ctx_token = tokens
        with contextlib.suppress(ValueError):  # a token from another context: nothing to undo
            reset_context(ctx_token)
            reset_request_id(rid_token)


def connect_publish_signals() -> None:
    """Attach the request id to every task this process sends, and restore it in tasks it runs."""
    if _state["connected"]:
        return
    signals.before_task_publish.connect(_add_request_id, weak=False)
    signals.task_prerun.connect(_restore_request_id, weak=False)
    signals.task_postrun.connect(_forget_request_id, weak=False)
    _state["connected"] = True


# -- worker logs -----------------------------------------------------------------------------------
def _setup_logging(**_: Any) -> None:
    # Connecting this signal also stops Celery from installing its own handlers.
    settings: Settings = _state["settings"] or Settings()
    configure_logging(settings.log_level, settings.log_format, service="worker")


# -- worker metrics --------------------------------------------------------------------------------
def worker_metrics_dir(settings: Settings, pid: int | None = None) -> Path:
    return settings.worker_metrics_root / f"{socket.gethostname()}-{pid or os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_metric_dirs(root: Path) -> list[Path]:
    """Delete the directories of workers on this host whose process is gone."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    prefix = socket.gethostname() + "-"
    for entry in root.iterdir():
        if not entry.is_dir() or not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix) :]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _prepare_metrics_dir(**_: Any) -> None:
    """Give this worker its multiprocess directory before prometheus_client loads (once)."""
    if _state.get("metrics_dir") is not None:
        return
    settings: Settings = _state["settings"] or Settings()
    path = worker_metrics_dir(settings)
    remove_stale_metric_dirs(path.parent)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[_MULTIPROC_ENV] = str(path)
    _state["metrics_dir"] = path


def _start_exporter(**_: Any) -> None:
    """worker_init: serve the sum of this worker's processes on the loopback port, when one is set."""
    from prometheus_client import values

    path: Path | None = _state.get("metrics_dir")
    if path is None:
        return
    if not getattr(values.ValueClass, "_multiprocess", False):
        log.warning(
            "prometheus_client was imported before %s was set: pool processes' metrics are lost",
            _MULTIPROC_ENV,
        )
    settings: Settings = _state["settings"] or Settings()
    if settings.worker_metrics_port is None:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    try:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry)
    except OSError as exc:
        log.warning(
            "worker metrics: cannot listen on %s:%s: %s",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
            exc,
        )
        return
    log.info(
        "worker metrics on http://%s:%s/metrics",
        settings.worker_metrics_host,
        settings.worker_metrics_port,
        extra={"metrics_dir": str(path)},
    )


def install_worker_observability(app: Celery, settings: Settings) -> None:
    """Hooks for the worker process: JSON logs, request ids, multiprocess metrics and their exporter."""
    _state["settings"] = settings
    connect_publish_signals()
    signals.setup_logging.connect(_setup_logging, weak=False)
    # The worker imports the task modules (and so prometheus_client) right after `import_modules`,
    # before `celeryd_init`: the directory must be set by then.
    signals.import_modules.connect(_prepare_metrics_dir, weak=False)
    signals.celeryd_init.connect(_prepare_metrics_dir, weak=False)
    signals.worker_init.connect(_start_exporter, weak=False)
