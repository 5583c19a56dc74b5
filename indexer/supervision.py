"""The local supervisor's published state: `clipsearch up` writes it, /health reads it.

One small JSON file under DATA_DIR, replaced atomically on every round of the supervisor, so that the API
reports restarts and given-up parts through no other channel (it works while Redis is down). A file
older than STALE_AFTER_S belongs to a supervisor that is gone and is reported as stale, not trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

STATUS_NAME = "supervisor.json"
STALE_AFTER_S = 15.0


class PartState(StrEnum):
    RUNNING = "running"  # alive and answering its readiness probe
    STARTING = "starting"  # (re)started, not answering yet
    BACKOFF = "backoff"  # dead, waiting for its next restart
    GIVEN_UP = "given_up"  # died too often within the window: left down


def status_path(data_dir: Path) -> Path:
    return data_dir / STATUS_NAME


def write_status(path: Path, report: dict[str, Any]) -> None:
    """Replace the file at once (write a sibling, then rename), so a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, sort_keys=True))
    os.replace(tmp, path)


def remove_status(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read_status(path: Path) -> dict[str, Any] | None:
    """The published state, or None when no supervisor publishes here (the API runs alone)."""
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # /health reports an unreadable file, it must not fail itself
        return {"error": f"unreadable {path.name}: {exc}"}
    return report if isinstance(report, dict) else {"error": f"unreadable {path.name}"}


def health_view(report: dict[str, Any], now: float) -> dict[str, Any]:
    """What /health shows: no process ids (the endpoint is public), a `stale` flag for a file that its
    supervisor stopped refreshing, and `degraded` while a part is given up."""
    view = {key: value for key, value in report.items() if key != "pids"}
    updated = report.get("updated_at")
    stale = not isinstance(updated, int | float) or now - float(updated) > STALE_AFTER_S
    view["stale"] = stale
    given_up = report.get("given_up") or []
    view["degraded"] = bool(given_up) and not stale
    return view
