"""The one place where typed errors become HTTP status codes and JSON bodies."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from indexer import errors

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.ClipsearchError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
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


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.ClipsearchError)
    def _typed(exc: errors.ClipsearchError) -> tuple[Response, int]:
        return error_response(status_for(exc), exc.code, exc.message, exc.details)

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
        log.exception("unhandled error")
        return error_response(500, "internal", "internal server error")
