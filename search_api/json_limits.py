"""JSON request bodies are bounded before they are parsed (issue 23, item 8).

Parsing JSON costs far more memory than its bytes (20 MiB of ``{}`` took 525 MiB), so a body is checked
in stages, each before the costlier next one:

1. its size: at most MAX_JSON_BYTES (1 MiB by default), or MAX_JSON_LARGE_BYTES on the routes marked
   ``@large_json`` (those that carry base64 images or raw vectors), from Content-Length before anything
   is read and while a chunked body streams in (a 413 either way);
2. its containers and values, counted in the bytes (``{``, ``[`` and ``,``: C-speed, and an upper bound,
   since a string may hold them too): at most MAX_CONTAINERS objects and arrays and MAX_VALUES values,
   so that what the parser builds stays within a small multiple of the body (a 400);
3. its nesting: deeper than the interpreter's recursion limit is caught where the parser raises it, and
   deeper than MAX_DEPTH is refused once parsed, by an iterative walk (a 400 with the reason, never a
   RecursionError's 500).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, TypeVar

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import LimitedStream

from indexer.errors import InvalidInput, PayloadTooLarge
from indexer.settings import Settings

MAX_DEPTH: Final = 32
MAX_CONTAINERS: Final = 100_000
MAX_VALUES: Final = 2_000_000
F = TypeVar("F", bound=Callable[..., Any])
_CAP_KEY: Final = "clipsearch.json_cap"


def large_json(view: F) -> F:
    """Mark a route whose JSON body may be up to MAX_JSON_LARGE_BYTES (base64 images, raw vectors)."""
    view.large_json = True  # type: ignore[attr-defined]
    return view


def install_json_limits(app: Flask, settings: Settings) -> None:
    """Give each JSON request its route's body cap; multipart bodies keep MAX_UPLOAD_BYTES."""

    @app.before_request
    def _cap_json() -> None:
        if request.mimetype != "application/json":
            return
        view = app.view_functions.get(request.endpoint or "")
        large = getattr(view, "large_json", False)
        cap = settings.max_json_large_bytes if large else settings.max_json_bytes
        request.environ[_CAP_KEY] = cap
        if request.content_length is not None:
            request.max_content_length = cap  # werkzeug refuses it from the header, before reading
        else:
            # A chunked body: werkzeug would cut it at max_content_length without a word (and parse
            # the truncated JSON). Read at most one byte past the cap: read_body refuses a body that
            # has that byte.
            request.environ["wsgi.input"] = LimitedStream(request.environ["wsgi.input"], cap + 1)


def read_body() -> bytes:
    """The request's bytes, within its cap (a typed 413 that names the setting)."""
    limit = request.environ.get(_CAP_KEY)
    try:
        data = request.get_data(cache=True)
        if limit is not None and len(data) > limit:
            raise RequestEntityTooLarge()
        return data
    except RequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"JSON body over the limit of {limit} bytes of this route (MAX_JSON_BYTES, or "
            "MAX_JSON_LARGE_BYTES for images and vectors; send images as multipart)",
            {"reason": "json_too_large", "limit": limit},
        ) from exc


def load(raw: bytes) -> Any:
    """Parse a JSON body after the counts; InvalidInput with the reason when it is too nested or big."""
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > MAX_CONTAINERS:
        raise InvalidInput(
            f"JSON body with up to {containers} objects and arrays, over the limit of {MAX_CONTAINERS}",
            {"reason": "json_too_many_containers", "limit": MAX_CONTAINERS},
        )
    values = raw.count(b",")
    if values > MAX_VALUES:
        raise InvalidInput(
            f"JSON body with up to {values} values, over the limit of {MAX_VALUES}",
            {"reason": "json_too_many_values", "limit": MAX_VALUES},
        )
    try:
        value = json.loads(raw or b"null")
    except RecursionError as exc:
        raise _too_deep() from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from exc
    if _depth(value) > MAX_DEPTH:
        raise _too_deep()
    return value


def _too_deep() -> InvalidInput:
    return InvalidInput(
        f"JSON nested deeper than {MAX_DEPTH} levels", {"reason": "json_too_deep", "limit": MAX_DEPTH}
    )


def _depth(value: Any) -> int:
    """The nesting depth of parsed JSON, without recursion (its containers are already bounded)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        stack.extend((child, depth + 1) for child in item)
    return deepest
