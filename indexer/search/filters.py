"""Search filters (tags, labels, metadata, dates) as one Weaviate `where` on the image objects."""

from __future__ import annotations

from datetime import UTC, datetime

from weaviate.classes.query import Filter, GeoCoordinate

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
    parts += photo_filters(filters)
    return parts[0] if len(parts) == 1 else Filter.all_of(parts)


def _utc(value: datetime) -> datetime:
    """A time without a zone is UTC (Weaviate needs one)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def photo_filters(filters: SearchFilters) -> list[WhereFilter]:
    """When (taken_after/before), with what (camera, lens) and where (country, region, city, near)."""
    parts: list[WhereFilter] = []
    if filters.taken_after:
        parts.append(Filter.by_property("taken_at").greater_or_equal(_utc(filters.taken_after)))
    if filters.taken_before:
        parts.append(Filter.by_property("taken_at").less_than(_utc(filters.taken_before)))
    for name in ("camera", "lens", "region", "city"):
        value = getattr(filters, name)
        if value:
            parts.append(Filter.by_property(name).equal(value))
    if filters.country:
        parts.append(
            Filter.any_of(
                [
                    Filter.by_property("country").equal(filters.country),
                    Filter.by_property("country_code").equal(filters.country.upper()),
                ]
            )
        )
    if filters.near:
        near = filters.near
        parts.append(
            Filter.by_property("location").within_geo_range(
                coordinate=GeoCoordinate(latitude=near.lat, longitude=near.lon), distance=near.km * 1000.0
            )
        )
    return parts
