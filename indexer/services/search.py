"""The search use case: by text, by an uploaded image, by a stored image, and an image's neighbours.

One Weaviate request per search in the steady state:

- no schema work per request: the collections exist from start-up (`Backends.ensure_schema`) or from
  `create_collection`;
- the user collection's binding (name -> model) is remembered, but only when it is the model this service
  runs (the one answer that leads to a query). A cached binding is never taken as the last word: when a
  search finds nothing, the registry is read again, so a collection that was deleted (404), moved to
  another model (409, `ModelMismatch`) or whose Weaviate collection disappeared answers as it should;
- a stored image is searched by `near_object` (Weaviate reads its vector), not a fetch and a search.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from cachetools import TTLCache
from numpy.typing import NDArray
from weaviate.exceptions import WeaviateQueryError

from indexer.errors import InvalidInput, require_model
from indexer.limits import check_filters
from indexer.media.decode import decode_image
from indexer.search.filters import build_filters, in_collection
from indexer.search.requests import (
    WEAVIATE_MAX_RESULTS,
    ImageSearchRequest,
    SearchFilters,
    SearchOptions,
    TextSearchRequest,
    check_limits,
)
from indexer.search.sorting import sort_hits
from indexer.search.text_vectors import TextEmbeddingCache, combine
from indexer.services.backends import Backends
from indexer.store.collections import CollectionInfo, get_collection
from indexer.store.images import ImageStore, ScoredImage, check_image_id, find_image, is_missing_class
from indexer.store.types import WhereFilter

__all__ = [  # the request types that the routes use, through this door
    "WEAVIATE_MAX_RESULTS",
    "ImageSearchRequest",
    "SearchFilters",
    "SearchOptions",
    "SearchResult",
    "SearchService",
    "TextSearchRequest",
]

# One page of near-vector or near-object hits: (store, where, limit, offset) -> hits
Query = Callable[[ImageStore, WhereFilter, int, int], list[ScoredImage]]

BINDING_TTL_S = 60.0  # how long a remembered binding is trusted without a look at the registry
BINDING_CACHE_SIZE = 4096


@dataclass(frozen=True)
class SearchResult:
    model_id: str
    hits: list[ScoredImage]
    cache_hit: bool = False


class SearchService:
    def __init__(self, backends: Backends, text_cache: TextEmbeddingCache | None = None) -> None:
        self.backends = backends
        self.settings = backends.settings
        self.text_cache = text_cache or TextEmbeddingCache()
        self._bindings: TTLCache[str, CollectionInfo] = TTLCache(BINDING_CACHE_SIZE, BINDING_TTL_S)
        self._lock = threading.Lock()
        self._store: ImageStore | None = None

    def _image_store(self) -> ImageStore:
        """The store of this service's model (every collection it searches is bound to it), built once:
        building one costs two client objects, about 0.5 ms of a search. Built again when the client
        moved to another node (a cluster's failover closes the old one: its store would answer
        WeaviateClosedClientError for good)."""
        client = self.backends.weaviate
        if self._store is None or self._store.client is not client:
            self._store = ImageStore(client, self.model_id)
        return self._store

    @property
    def model_id(self) -> str:
        return self.backends.model_id

    # -- use cases ---------------------------------------------------------------------------------
    def by_text(self, req: TextSearchRequest) -> SearchResult:
        self._check(req, max_queries=self.settings.search_max_queries)
        info = self._collection(req.collection)
        encoder = self.backends.encoder
        texts, weights = zip(*req.weighted(), strict=True)
        vectors, cache_hit = self.text_cache.get_many(
            encoder.model_id, list(texts), lambda batch: encoder.encode_texts(batch)[0]
        )
        vector = combine(vectors, list(weights))
        hits = self._run(info, req, self._near_vector(vector, req.min_score))
        return SearchResult(encoder.model_id, hits, cache_hit)

    def by_upload(self, req: ImageSearchRequest, data: bytes) -> SearchResult:
        if req.image_id:
            raise InvalidInput("give either an uploaded `image` or an `image_id`, not both")
        self._check(req)
        info = self._collection(req.collection)
        encoder = self.backends.encoder
        image = decode_image(data, self.settings.max_image_pixels, min_side=encoder.min_decode_side)
        vector = encoder.encode_images([image.pixels])[0]
        return SearchResult(encoder.model_id, self._run(info, req, self._near_vector(vector, req.min_score)))

    def by_image_id(self, req: ImageSearchRequest) -> SearchResult:
        if not req.image_id:
            raise InvalidInput("give an uploaded `image` (multipart) or an `image_id`")
        image_id = check_image_id(req.image_id)
        self._check(req)
        info = self._collection(req.collection)
        min_score = req.min_score

        def query(store: ImageStore, where: WhereFilter, limit: int, offset: int) -> list[ScoredImage]:
            return store.near_image(image_id, where, limit, offset, min_score)

        return SearchResult(self.model_id, self._run(info, req, query))

    def similar(self, image_id: str, limit: int, min_score: float | None) -> list[ScoredImage]:
        """The nearest images of the image's own collection (in its own model's index), itself left out."""
        store, record, _ = find_image(self.backends.weaviate, image_id, first_model=self.model_id)
        hits = store.near_image(record.id, in_collection(record.collection), limit + 1, 0, min_score)
        return [hit for hit in hits if hit.image.id != record.id][:limit]

    # -- the parts ---------------------------------------------------------------------------------
    def _check(self, req: SearchOptions, max_queries: int | None = None) -> None:
        settings = self.settings
        check_limits(
            req, settings.max_search_limit, sort_window=settings.search_sort_window, max_queries=max_queries
        )
        check_filters(req.filters, settings)

    @staticmethod
    def _near_vector(vector: NDArray[np.float32], min_score: float | None) -> Query:
        def query(store: ImageStore, where: WhereFilter, limit: int, offset: int) -> list[ScoredImage]:
            return store.near_vector(vector, where, limit, offset, min_score)

        return query

    def _collection(self, name: str) -> CollectionInfo:
        """The collection, bound to this service's model (else ModelMismatch): from memory when it was
        seen so before, else from the registry (one request)."""
        with self._lock:
            known = self._bindings.get(name)
        return known if known is not None else self._look_up(name)

    def _look_up(self, name: str) -> CollectionInfo:
        info = get_collection(self.backends.weaviate, name, with_count=False)  # NotFound: 404
        require_model(
            f"collection {name!r}",
            info.model_id,
            self.model_id,
            hint=f"re-embed it with POST /collections/{name}/reembed",
        )
        with self._lock:
            self._bindings[name] = info
        return info

    def _forget(self, name: str) -> None:
        with self._lock:
            self._bindings.pop(name, None)

    def _run(self, info: CollectionInfo, req: SearchOptions, query: Query) -> list[ScoredImage]:
        try:
            hits = self._page(info, req, query)
        except WeaviateQueryError as exc:
            if not is_missing_class(exc):
                raise
            # The model's Weaviate collection is gone (removed by another process, or wiped): the registry
            # says whether the user collection still exists (404 if not); if it does, create the index
            # again, empty, and answer from it.
            self._forget(info.name)
            info = self._look_up(info.name)
            ImageStore(self.backends.weaviate, info.model_id, ensure=True)
            return self._page(info, req, query)
        if not hits:
            # Nothing found: make sure the remembered binding still holds (deleted -> 404, moved -> 409).
            self._forget(info.name)
            fresh = self._look_up(info.name)
            if fresh.model_id != info.model_id or fresh.created_at != info.created_at:
                return self._page(fresh, req, query)  # pragma: no cover - a race with a re-create
        return hits

    def _page(self, info: CollectionInfo, req: SearchOptions, query: Query) -> list[ScoredImage]:
        """min_score first, then an optional sort, then the page.

        With sort_by, the best SEARCH_SORT_WINDOW matches are ordered by the field: one query of that size,
        not of Weaviate's whole 10,000-result window. Ties keep the score order (a stable sort).
        """
        store = self._image_store()  # info is bound to this service's model (require_model)
        where = build_filters(info.name, req.filters)
        if req.sort_by is None:
            return query(store, where, req.limit, req.offset)
        window = min(self.settings.search_sort_window, WEAVIATE_MAX_RESULTS)
        ordered = sort_hits(query(store, where, window, 0), req.sort_by)
        return ordered[req.offset : req.offset + req.limit]
