"""Typed errors. search_api maps each to one HTTP status in one place."""

from __future__ import annotations

from typing import Any


class ClipsearchError(Exception):
    """Base of every error that the core raises on purpose."""

    code = "internal"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(ClipsearchError):
    """The caller sent something we cannot use (bad JSON, bad image, bad parameter)."""

    code = "invalid_input"


class NotFound(ClipsearchError):
    code = "not_found"


class Conflict(ClipsearchError):
    code = "conflict"


class PayloadTooLarge(ClipsearchError):
    code = "payload_too_large"


class UnsupportedMediaType(ClipsearchError):
    code = "unsupported_media_type"


class Unauthorized(ClipsearchError):
    code = "unauthorized"


class Forbidden(ClipsearchError):
    code = "forbidden"


class ServiceUnavailable(ClipsearchError):
    """A backing service (Weaviate, Redis, workers, model) is not ready."""

    code = "service_unavailable"


class ModelUnavailable(ServiceUnavailable):
    """The model files are missing and cannot be fetched (offline, say)."""

    code = "model_unavailable"


class StartupError(ClipsearchError):
    """A managed server could not start; the message names the cause."""

    code = "startup_failed"
