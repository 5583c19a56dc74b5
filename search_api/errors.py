"""The one place where typed errors become HTTP status codes and JSON bodies."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from indexer import errors

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 5

STATUS_BY_ERROR: dict[type[errors.ClipsearchError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.MisdirectedRequest: 421,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.TooManyRequests: 429,
    errors.DecodeLimitExceeded: 422,
    errors.ServiceUnavailable: 503,
    errors.StartupError: 503,
}


def status_for(exc: errors.ClipsearchError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_response(status: int, code: str, message: str, details: Any = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return jsonify({"error": body}), status


def _retry_after(app: Flask) -> int:
    svc = app.extensions.get("clipsearch")  # search_api.services.EXTENSION_KEY
    return int(getattr(getattr(svc, "settings", None), "dependency_retry_after_s", DEFAULT_RETRY_AFTER_S))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.ClipsearchError)
    def _typed(exc: errors.ClipsearchError) -> tuple[Response, int]:
        response, status = error_response(status_for(exc), exc.code, exc.message, exc.details)
        if status == 503:
            # A dependency that is down (or not ready yet): tell clients when to try again.
            if isinstance(exc, errors.DependencyUnavailable):
                seconds = exc.retry_after_s
            else:
                seconds = _retry_after(app)
            response.headers["Retry-After"] = str(seconds)
        elif isinstance(exc, errors.TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response, status

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> tuple[Response, int]:
        details = [
            {"loc": ".".join(str(part) for part in err["loc"]), "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        return error_response(400, "invalid_input", "request failed validation", details)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        name = (exc.name or "error").lower().replace(" ", "_")
        return error_response(status, name, exc.description or exc.name or "error")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        # Redis, the broker or Weaviate not answering is an outage (503 + Retry-After), not a bug.
        down = errors.dependency_failure(exc, _retry_after(app))
        if down is not None:
            log.warning("dependency unavailable: %s: %s", exc.__class__.__name__, exc)
            return _typed(down)
        log.exception("unhandled error")
        return error_response(500, "internal", "internal server error")
