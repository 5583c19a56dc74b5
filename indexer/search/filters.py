"""Search filters (tags, labels, metadata, dates) as one Weaviate `where` on the image objects."""

from __future__ import annotations

from weaviate.classes.query import Filter

from indexer.search.requests import SearchFilters
from indexer.store.images import in_collection, meta_kv
from indexer.store.types import WhereFilter

__all__ = ["build_filters", "in_collection"]


def build_filters(collection: str, filters: SearchFilters) -> WhereFilter:
    parts: list[WhereFilter] = [in_collection(collection)]
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
    return parts[0] if len(parts) == 1 else Filter.all_of(parts)
