"""Search a collection by text (weighted positive and negative queries) or by image."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from weaviate.classes.query import Filter
from weaviate.collections.classes.filters import _Filters

from indexer.errors import InvalidInput
from indexer.store.images import ImageStore, ScoredImage, meta_kv

WEAVIATE_MAX_RESULTS = 10_000
DEFAULT_SORT_WINDOW = 1000  # Settings.search_sort_window
SORT_FIELDS = {"ingested_at", "filename", "width", "height", "bytes", "format"}


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(default_factory=list, description="the image has every one of these tags")
    tags_any: list[str] = Field(default_factory=list, description="the image has at least one of these tags")
    labels: list[str] = Field(default_factory=list, description="the image has every one of these labels")
    labels_any: list[str] = Field(default_factory=list, description="at least one of these labels")
    metadata: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="metadata fields equal to these values"
    )
    created_after: datetime | None = Field(default=None, description="ingested at or after this time")
    created_before: datetime | None = Field(default=None, description="ingested before this time")

    @field_validator("created_after", "created_before")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        # Weaviate keeps dates as int64 nanoseconds: outside these years a filter would wrap around.
        if value is not None and not 1678 <= value.year <= 2261:
            raise ValueError("dates must lie between the years 1678 and 2261")
        return value


class SearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str
    filters: SearchFilters = Field(default_factory=SearchFilters)
    limit: int = Field(default=20, ge=1)
    offset: int = Field(default=0, ge=0)
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0, description="cosine similarity cut-off")
    sort_by: str | None = Field(
        default=None,
        description="after the min_score cut, order the best SEARCH_SORT_WINDOW (1000) matches by a field "
        "instead of score: ingested_at, filename, width, height, bytes, format or metadata.<key>; prefix "
        "'-' for descending. Mixed values: numbers, then texts, then others; missing values last",
    )

    @model_validator(mode="after")
    def _check_sort(self) -> SearchOptions:
        if self.sort_by is not None:
            name = self.sort_by.removeprefix("-")
            if name not in SORT_FIELDS and not (name.startswith("metadata.") and len(name) > 9):
                raise ValueError(f"cannot sort by {self.sort_by!r}")
        return self


class WeightedQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)


class TextSearchRequest(SearchOptions):
    query: str | None = Field(default=None, min_length=1)
    positive: list[WeightedQuery] = Field(default_factory=list)
    negative: list[WeightedQuery] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_query(self) -> TextSearchRequest:
        if (self.query is None) == (not self.positive):
            raise ValueError("give either `query` or weighted `positive` queries (and optional `negative`)")
        return self

    def weighted(self) -> list[tuple[str, float]]:
        positive = [WeightedQuery(text=self.query)] if self.query is not None else self.positive
        return [(q.text, q.weight) for q in positive] + [(q.text, -q.weight) for q in self.negative]


class ImageSearchRequest(SearchOptions):
    image_id: str | None = None


def check_limits(
    options: SearchOptions,
    max_limit: int,
    *,
    sort_window: int = DEFAULT_SORT_WINDOW,
    max_queries: int | None = None,
) -> None:
    if options.limit > max_limit:
        raise InvalidInput(f"limit {options.limit} is over the maximum of {max_limit}")
    if options.offset + options.limit > WEAVIATE_MAX_RESULTS:
        raise InvalidInput(f"offset + limit must not exceed {WEAVIATE_MAX_RESULTS}")
    window = min(sort_window, WEAVIATE_MAX_RESULTS)
    if options.sort_by is not None and options.offset + options.limit > window:
        raise InvalidInput(
            f"with sort_by, offset + limit must not exceed {window}: the best {window} matches are sorted "
            "(SEARCH_SORT_WINDOW)",
            {"offset": options.offset, "limit": options.limit, "sort_window": window},
        )
    if max_queries is not None and isinstance(options, TextSearchRequest):
        for name, queries in (("positive", options.positive), ("negative", options.negative)):
            if len(queries) > max_queries:
                raise InvalidInput(
                    f"{len(queries)} `{name}` queries, over the limit of {max_queries} (SEARCH_MAX_QUERIES)",
                    {"field": name, "count": len(queries), "limit": max_queries},
                )


def build_filters(collection: str, filters: SearchFilters) -> _Filters:
    parts: list[_Filters] = [Filter.by_property("collection").equal(collection)]
    if filters.tags:
        parts.append(Filter.by_property("tags").contains_all(filters.tags))
    if filters.tags_any:
        parts.append(Filter.by_property("tags").contains_any(filters.tags_any))
    if filters.labels:
        parts.append(Filter.by_property("labels").contains_all(filters.labels))
    if filters.labels_any:
        parts.append(Filter.by_property("labels").contains_any(filters.labels_any))
    if filters.metadata:
        parts.append(Filter.by_property("meta_kv").contains_all(meta_kv(dict(filters.metadata))))
    if filters.created_after:
        parts.append(Filter.by_property("ingested_at").greater_or_equal(filters.created_after))
    if filters.created_before:
        parts.append(Filter.by_property("ingested_at").less_than(filters.created_before))
    return Filter.all_of(parts)


def combine(vectors: NDArray[np.float32], weights: list[float]) -> NDArray[np.float32]:
    """The weighted sum of unit text vectors, normalised: positives pull, negatives push."""
    combined = (np.asarray(weights, dtype=np.float32)[:, None] * vectors).sum(axis=0)
    norm = float(np.linalg.norm(combined))
    if norm < 1e-8:
        raise InvalidInput("the weighted queries cancel out; change the weights")
    result: NDArray[np.float32] = (combined / norm).astype(np.float32)
    return result


_NUMBER, _TEXT, _TIME, _OTHER = 0, 1, 2, 3


def _sort_key(field: str) -> Callable[[ScoredImage], tuple[bool, Any]]:
    """A key that orders any mix of values (a metadata key can hold a number on one image and a text on
    another): numbers (booleans as 0/1), then texts, then times, then anything else by its JSON text;
    the flag marks a missing value (None), which sorts last in either direction."""

    def key(hit: ScoredImage) -> tuple[bool, Any]:
        if field.startswith("metadata."):
            value = hit.image.metadata.get(field[9:])
        else:
            value = getattr(hit.image, field)
        if value is None:
            return (True, (_OTHER, ""))
        if isinstance(value, bool | int | float):
            number = float(value)
            return (False, (_NUMBER, number if number == number else float("inf")))  # NaN after numbers
        if isinstance(value, str):
            return (False, (_TEXT, value))
        if isinstance(value, datetime):
            return (False, (_TIME, value.timestamp()))
        return (False, (_OTHER, json.dumps(value, sort_keys=True, default=str)))

    return key


def run_search(
    store: ImageStore,
    vector: NDArray[np.float32],
    options: SearchOptions,
    sort_window: int = DEFAULT_SORT_WINDOW,
) -> list[ScoredImage]:
    """Near-vector search with filters; min_score first, then an optional sort, then the page.

    With sort_by, the best `sort_window` matches (SEARCH_SORT_WINDOW) are ordered by the field: one query
    of that size, not of Weaviate's whole 10,000-result window. Ties keep the score order (a stable sort).
    """
    filters = build_filters(options.collection, options.filters)
    if options.sort_by is None:
        return store.near_vector(vector, filters, options.limit, options.offset, options.min_score)
    window = min(sort_window, WEAVIATE_MAX_RESULTS)
    hits = store.near_vector(vector, filters, window, 0, options.min_score)
    key = _sort_key(options.sort_by.removeprefix("-"))
    keyed = [(key(h), h) for h in hits]
    present = [(k[1], h) for k, h in keyed if not k[0]]
    missing = [h for k, h in keyed if k[0]]
    present.sort(key=lambda pair: pair[0], reverse=options.sort_by.startswith("-"))
    ordered = [h for _, h in present] + missing  # images without the field come last either way
    return ordered[options.offset : options.offset + options.limit]


class TextEmbeddingCache:
    """A thread-safe LRU of text embeddings, so that a repeated query skips the encoder."""

    def __init__(self, maxsize: int = 2048) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[str, str], NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(
        self,
        model_id: str,
        texts: list[str],
        encode: Callable[[list[str]], NDArray[np.float32]],
    ) -> tuple[NDArray[np.float32], bool]:
        """Vectors for `texts`; the flag says whether every one came from the cache."""
        with self._lock:
            found = {t: self._entries[(model_id, t)] for t in texts if (model_id, t) in self._entries}
            for text in found:
                self._entries.move_to_end((model_id, text))
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            vectors = encode(missing)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    self._entries[(model_id, text)] = vector
                    found[text] = vector
                while len(self._entries) > self.maxsize:
                    self._entries.popitem(last=False)
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        return np.stack([found[t] for t in texts]), not missing
