"""`clipsearch sync DIR --collection C [--dry-run] [--watch]`: keep a collection in step with a folder
on the service's own machine (under FOLDER_ROOTS), through POST /collections/<c>/sync."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from clipsearch.client import ENDED_STATES, ApiClient
from clipsearch.debounce import Debouncer
from indexer.errors import ClipsearchError
from indexer.settings import Settings

WATCH_TICK_S = 0.2  # how often --watch looks whether the folder has been quiet long enough
# Events that change what a sync sees; a file opened or read (the worker hashing it) is not one.
CHANGES = frozenset({"created", "deleted", "modified", "moved", "closed"})


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    sync = subparsers.add_parser(
        "sync", help="keep a collection in step with a folder on the service's machine (FOLDER_ROOTS)"
    )
    sync.add_argument("directory")
    sync.add_argument("--collection", required=True)
    sync.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")
    sync.add_argument("--watch", action="store_true", help="then sync again after each burst of changes")
    sync.add_argument("--quiet-s", type=float, default=2.0, help="--watch: seconds without events first")
    sync.add_argument("--url", help="the service (default: http://API_HOST:API_PORT)")
    sync.set_defaults(func=cmd_sync)


def _api(settings: Settings, url: str | None) -> ApiClient:
    return ApiClient(
        url or f"http://{settings.api_host}:{settings.api_port}", next(iter(settings.api_keys), None)
    )


def run_sync(api: ApiClient, collection: str, directory: str, dry_run: bool) -> dict[str, Any]:
    """One sync, followed to its end; returns the job's report. When a sync of the folder runs already
    (another `clipsearch sync`, the API), this one waits for it to end, then starts."""
    while True:
        started = api.call(
            "POST",
            f"/collections/{collection}/sync",
            expect=(202, 409),
            json={"path": directory, "dry_run": dry_run},
        )
        details = started.get("error", {}).get("details") or {}
        if "error" not in started:
            return _follow(api, started["job_id"])
        if details.get("reason") != "sync_running":
            raise ClipsearchError(started["error"]["message"])
        if details.get("job_id"):
            print(f"a sync of {directory} is running (job {details['job_id']}): waiting for it", flush=True)
            _follow(api, details["job_id"])
        else:
            time.sleep(WATCH_TICK_S)


def _follow(api: ApiClient, job_id: str) -> dict[str, Any]:
    while True:
        report: dict[str, Any] = api.call("GET", f"/jobs/{job_id}", params={"wait": 5})
        if report["state"] in ENDED_STATES:
            return report


def summary(report: dict[str, Any]) -> str:
    counts = report.get("sync") or {}
    parts = [f"{key} {counts.get(key, 0)}" for key in ("added", "replaced", "moved", "removed", "failed")]
    if counts.get("adopted"):
        parts.insert(3, f"adopted {counts['adopted']}")
    line = ", ".join(parts) + f" (unchanged {counts.get('unchanged', 0)})"
    if counts.get("dry_run"):
        line = "dry run, nothing changed: would have " + line
    if report["state"] != "completed":
        line += f" -- job {report['state']}: {report.get('failure') or ''}"
    return line


def _print(report: dict[str, Any]) -> None:
    print(summary(report), flush=True)
    for error in report.get("errors", []):
        print(f"  failed: {error['file']}: {error['reason']}", flush=True)


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    directory = os.path.abspath(args.directory)
    if not Path(directory).is_dir():
        print(f"error: {directory} is not a directory", file=sys.stderr)
        return 2
    api = _api(settings, args.url)
    api.ensure_collection(args.collection)
    if args.watch:
        return watch(api, args.collection, directory, args.dry_run, Debouncer(quiet_s=args.quiet_s))
    report = run_sync(api, args.collection, directory, args.dry_run)
    _print(report)
    return 0 if report["state"] == "completed" and not report["sync"]["failed"] else 1


def watch(api: ApiClient, collection: str, directory: str, dry_run: bool, debouncer: Debouncer) -> int:
    """One sync, then one after each burst of the folder's file-system events (watchdog), until Ctrl-C.
    The folder is watched from before the first sync, so that no change made meanwhile is missed."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in CHANGES:
                debouncer.touch(time.monotonic())

    observer = Observer()
    observer.schedule(Handler(), directory, recursive=True)
    observer.start()
    try:
        _print(run_sync(api, collection, directory, dry_run))
        print(f"watching {directory} (Ctrl-C to stop)", flush=True)
        while observer.is_alive():
            time.sleep(WATCH_TICK_S)
            if debouncer.take(time.monotonic()):
                try:
                    _print(run_sync(api, collection, directory, dry_run))
                except ClipsearchError as exc:  # the service away for long: say so, keep watching
                    print(f"sync failed: {exc.message}", file=sys.stderr, flush=True)
                    debouncer.touch(time.monotonic())
    except KeyboardInterrupt:
        pass
    finally:
        observer.stop()
        observer.join(timeout=5)
    return 0
