"""Search a collection by text (weighted positive and negative queries) or by image.

- `requests`: the request models and their caps;
- `filters`: filters as a Weaviate `where`;
- `sorting`: `sort_by` over the best matches;
- `text_vectors`: the text-embedding cache and the weighted combination of queries.

The use case itself (one Weaviate query per search) is `indexer.services.search.SearchService`.
"""

from __future__ import annotations

from indexer.search.filters import build_filters, in_collection
from indexer.search.requests import (
    DEFAULT_SORT_WINDOW,
    SORT_FIELDS,
    WEAVIATE_MAX_RESULTS,
    ImageSearchRequest,
    SearchFilters,
    SearchOptions,
    TextSearchRequest,
    WeightedQuery,
    check_limits,
)
from indexer.search.sorting import sort_hits, sort_key
from indexer.search.text_vectors import TextEmbeddingCache, combine

_sort_key = sort_key  # the older private name, kept for callers

__all__ = [
    "DEFAULT_SORT_WINDOW",
    "SORT_FIELDS",
    "WEAVIATE_MAX_RESULTS",
    "ImageSearchRequest",
    "SearchFilters",
    "SearchOptions",
    "TextEmbeddingCache",
    "TextSearchRequest",
    "WeightedQuery",
    "build_filters",
    "check_limits",
    "combine",
    "in_collection",
    "sort_hits",
    "sort_key",
]
