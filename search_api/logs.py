"""Request ids and JSON access logs for the API.

Each request gets an id: the caller's `X-Request-ID` when it is a sane token, a new one otherwise. It is
echoed on the response, stamped on every log line written while the request runs, and travels with
every Celery task the request sends (workers/observability.py), so one id finds a job's lines in both
the API's and the worker's logs.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from indexer.logs import (
    REQUEST_ID_HEADER,
    clean_request_id,
    configure_logging,
    new_request_id,
    reset_request_id,
    set_request_id,
)
from indexer.settings import Settings

access_log = logging.getLogger("clipsearch.access")


def current_request_id() -> str | None:
    """The id of the request being handled (None outside a request)."""
    value: str | None = g.get("request_id")
    return value


def install_request_logging(app: Flask, settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format, service="api")

    @app.before_request
    def _begin() -> None:
        rid = clean_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        g.request_id = rid
        g.request_started = time.perf_counter()
        g.request_id_token = set_request_id(rid)

    @app.after_request
    def _finish(response: Response) -> Response:
        rid = g.get("request_id")
        if rid:
            response.headers[REQUEST_ID_HEADER] = rid
        started = g.get("request_started")
        if started is not None and request.endpoint != "metrics.metrics":
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "route": request.url_rule.rule if request.url_rule else None,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "remote": request.remote_addr,
                },
            )
        return response

    @app.teardown_request
    def _end(exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            reset_request_id(token)
