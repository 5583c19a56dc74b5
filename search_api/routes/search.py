"""Search by text (weighted queries) or by image (an upload or a stored image id)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from flask import Blueprint, Response, request
from pydantic import BaseModel

from indexer.errors import InvalidInput
from indexer.images import decode_image
from indexer.limits import check_filters
from indexer.search import (
    ImageSearchRequest,
    SearchOptions,
    TextSearchRequest,
    check_limits,
    combine,
    run_search,
)
from indexer.store.images import ScoredImage
from search_api.routes.images import ImageView
from search_api.services import Services, services
from search_api.validation import endpoint, json_body, parse, respond

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


def _respond(
    svc: Services, options: SearchOptions, hits: list[ScoredImage], started: float, cache_hit: bool = False
) -> tuple[Response, int]:
    results = [SearchHit(**ImageView.of(hit.image).model_dump(), score=hit.score) for hit in hits]
    return respond(
        SearchResponse(
            model_id=svc.encoder.model_id,
            results=results,
            count=len(results),
            limit=options.limit,
            offset=options.offset,
            cache_hit=cache_hit,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )
    )


@bp.post("/search/text")
@endpoint(
    "Search a collection by text: one query, or weighted positive and negative queries",
    body=TextSearchRequest,
    response=SearchResponse,
    tags=["search"],
)
def search_text() -> tuple[Response, int]:
    started = time.perf_counter()
    svc = services()
    req = parse(TextSearchRequest, json_body())
    settings = svc.settings
    check_limits(
        req,
        settings.max_search_limit,
        sort_window=settings.search_sort_window,
        max_queries=settings.search_max_queries,
    )
    check_filters(req.filters, settings)
    info = svc.encodable_collection(req.collection)
    encoder = svc.encoder
    texts, weights = zip(*req.weighted(), strict=True)
    vectors, cache_hit = svc.text_cache.get_many(
        encoder.model_id, list(texts), lambda batch: encoder.encode_texts(batch)[0]
    )
    vector = combine(vectors, list(weights))
    hits = run_search(svc.image_store(info), vector, req, settings.search_sort_window)
    return _respond(svc, req, hits, started, cache_hit)


def _image_request() -> tuple[ImageSearchRequest, bytes | None]:
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        fields: dict[str, Any] = {k: v for k, v in request.form.items() if k != "filters"}
        if "filters" in request.form:
            try:
                fields["filters"] = json.loads(request.form["filters"])
            except ValueError as exc:
                raise InvalidInput(f"form field `filters` is not valid JSON: {exc}") from exc
        req = parse(ImageSearchRequest, fields)
        data = upload.read() if upload is not None else None
        if upload is not None and req.image_id:
            raise InvalidInput("give either an uploaded `image` or an `image_id`, not both")
        return req, data
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
    svc = services()
    req, data = _image_request()
    check_limits(req, svc.settings.max_search_limit, sort_window=svc.settings.search_sort_window)
    check_filters(req.filters, svc.settings)
    info = svc.encodable_collection(req.collection)
    store = svc.image_store(info)
    if data is not None:
        image = decode_image(data, svc.settings.max_image_pixels, min_side=svc.encoder.min_decode_side)
        vector = svc.encoder.encode_images([image.pixels])[0]
    elif req.image_id:
        _, stored = store.get(req.image_id, include_vector=True)
        if stored is None:
            raise InvalidInput(f"image {req.image_id} has no vector")
        vector = np.asarray(stored, dtype=np.float32)
    else:
        raise InvalidInput("give an uploaded `image` (multipart) or an `image_id`")
    return _respond(svc, req, run_search(store, vector, req, svc.settings.search_sort_window), started)
