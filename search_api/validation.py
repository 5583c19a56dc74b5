"""Request validation with pydantic models, and the registry that /openapi.json is generated from.

Routes declare their models once with `@endpoint(...)`: the same models validate requests, shape the
responses and describe the route in the OpenAPI document.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from flask import Response, jsonify, request
from pydantic import BaseModel

from indexer.errors import InvalidInput, UnsupportedMediaType
from search_api import json_limits

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)


@dataclass
class EndpointSpec:
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    multipart: dict[str, str] = field(default_factory=dict)  # form field -> description
    binary_response: str | None = None  # media type of a non-JSON response
    tags: list[str] = field(default_factory=list)


ENDPOINTS: dict[str, EndpointSpec] = {}  # view function qualified name -> spec


def json_body() -> Any:
    """The request's JSON body, or InvalidInput/UnsupportedMediaType with the reason."""
    if not request.mimetype or request.mimetype != "application/json":
        raise UnsupportedMediaType(f"expected application/json, got {request.mimetype or 'no content type'}")
    return json_limits.load(json_limits.read_body())  # bounded before it is parsed (issue 23)


def parse(model: type[M], data: Any) -> M:
    """Validate plain data against `model`; pydantic's ValidationError becomes a 400 in errors.py."""
    if data is None:
        raise InvalidInput("a JSON object is required")
    return model.model_validate(data)


def parse_query(model: type[M]) -> M:
    return model.model_validate(request.args.to_dict())


def respond(model: BaseModel, status: int = 200) -> tuple[Response, int]:
    return jsonify(model.model_dump(mode="json")), status


def endpoint(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    multipart: dict[str, str] | None = None,
    binary_response: str | None = None,
    tags: list[str] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record a route's models for OpenAPI. Parsing stays explicit in the view (parse/json_body)."""

    def wrap(view: Callable[P, R]) -> Callable[P, R]:
        ENDPOINTS[f"{view.__module__}.{view.__qualname__}"] = EndpointSpec(
            summary=summary,
            body=body,
            query=query,
            response=response,
            status=status,
            multipart=multipart or {},
            binary_response=binary_response,
            tags=tags or [],
        )

        @functools.wraps(view)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            return view(*args, **kwargs)

        return inner

    return wrap
