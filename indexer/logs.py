"""Structured JSON logs and the request id that follows a request from the API into the workers.

The request id lives in a context variable: the API sets it per request (search_api/logs.py), the
worker restores it per task (workers/observability.py), and every log record picks it up through
`RequestIdFilter`. Nothing here imports Flask or Celery.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from typing import Any, TextIO

REQUEST_ID_HEADER = "X-Request-ID"
# Celery message header that carries the request id (see workers/observability.py).
TASK_HEADER = "clipsearch_request_id"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "clipsearch_request_id", default=None
)
# Extra fields for every record in the current context (the worker binds task_id and task name).
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "clipsearch_log_context", default=None
)
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

# Attributes every LogRecord has; anything else was passed through `extra=` and goes into the JSON.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "request_id"}
)
_HANDLER_NAME = "clipsearch-json"


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str | None:
    """A caller's id when it is safe to echo and log (short, no spaces or control characters)."""
    if value and _VALID_ID.match(value):
        return value
    return None


def get_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def bind_context(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Add fields to every log line written in this context until `reset_context(token)`."""
    return _context.set({**(_context.get() or {}), **fields})


def reset_context(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _context.reset(token)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (None outside a request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, any `extra=` fields, exc."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            entry["service"] = self.service
        entry["request_id"] = getattr(record, "request_id", None) or _request_id.get()
        entry.update(_context.get() or {})
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    level: str = "INFO", fmt: str = "json", service: str = "", stream: TextIO | None = None
) -> logging.Handler:
    """Route the root logger to one stream handler (JSON or plain text). Safe to call again.

    Calling it twice replaces the handler it installed before and leaves other handlers (pytest's,
    gunicorn's) alone.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
