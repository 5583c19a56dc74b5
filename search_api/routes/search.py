"""Search by text (weighted queries) or by image (an upload or a stored image id)."""

from __future__ import annotations

import json
import time
from typing import Any

import pydantic_core
from flask import Blueprint, Response, request
from pydantic import BaseModel

from indexer.errors import InvalidInput
from indexer.services.search import ImageSearchRequest, SearchOptions, SearchResult, TextSearchRequest
from search_api.routes.images import ImageView
from search_api.services import services
from search_api.validation import endpoint, json_body, parse

bp = Blueprint("search", __name__)


class SearchHit(ImageView):
    score: float


class SearchResponse(BaseModel):
    model_id: str
    results: list[SearchHit]
    count: int
    limit: int
    offset: int
    cache_hit: bool = False
    took_ms: float


def _respond(options: SearchOptions, found: SearchResult, started: float) -> tuple[Response, int]:
    # The hits are ImageRecords the store already validated: the body (SearchResponse's shape) is built as
    # plain data and serialised in pydantic's core, without a model per hit (0.24 -> 0.04 ms for 20 hits).
    results = [
        {
            **hit.image.__dict__,
            "thumbnail_url": f"/images/{hit.image.id}/thumbnail",
            "file_url": f"/images/{hit.image.id}/file",
            "score": hit.score,
        }
        for hit in found.hits
    ]
    body = {
        "model_id": found.model_id,
        "results": results,
        "count": len(results),
        "limit": options.limit,
        "offset": options.offset,
        "cache_hit": found.cache_hit,
        "took_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    return Response(pydantic_core.to_json(body), mimetype="application/json"), 200


@bp.post("/search/text")
@endpoint(
    "Search a collection by text: one query, or weighted positive and negative queries",
    body=TextSearchRequest,
    response=SearchResponse,
    tags=["search"],
)
def search_text() -> tuple[Response, int]:
    started = time.perf_counter()
    req = parse(TextSearchRequest, json_body())
    return _respond(req, services().search.by_text(req), started)


def _image_request() -> tuple[ImageSearchRequest, bytes | None]:
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        fields: dict[str, Any] = {k: v for k, v in request.form.items() if k != "filters"}
        if "filters" in request.form:
            try:
                fields["filters"] = json.loads(request.form["filters"])
            except ValueError as exc:
                raise InvalidInput(f"form field `filters` is not valid JSON: {exc}") from exc
        return parse(ImageSearchRequest, fields), upload.read() if upload is not None else None
    return parse(ImageSearchRequest, json_body()), None


@bp.post("/search/image")
@endpoint(
    "Search a collection by example image: an upload (multipart `image`) or a stored `image_id`",
    body=ImageSearchRequest,
    response=SearchResponse,
    multipart={
        "image": "the example image",
        "collection": "collection name",
        "limit": "int",
        "offset": "int",
        "min_score": "float",
        "sort_by": "field",
        "filters": "JSON filters object",
    },
    tags=["search"],
)
def search_image() -> tuple[Response, int]:
    started = time.perf_counter()
    req, data = _image_request()
    search = services().search
    found = search.by_upload(req, data) if data is not None else search.by_image_id(req)
    return _respond(req, found, started)
