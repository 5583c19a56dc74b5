"""The facets use case: per collection, how many images were taken in each year and month, with each
camera and lens, in each country and city (Weaviate aggregates grouped by value), for the page's pickers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import weaviate
from pydantic import BaseModel, Field

from indexer.store.collections import get_collection
from indexer.store.images import ImageStore

__all__ = ["Facets", "FacetsService"]

FACET_LIMIT = 500  # values per facet, the most common first


class Facets(BaseModel):
    collection: str
    total: int = Field(description="images in the collection")
    years: dict[str, int] = Field(description='"2019": images taken that year')
    months: dict[str, int] = Field(description='"2019-06": images taken that month (chronological)')
    cameras: dict[str, int]
    lenses: dict[str, int]
    countries: dict[str, int]
    regions: dict[str, int]
    cities: dict[str, int]


@dataclass(frozen=True)
class FacetsService:
    weaviate: Callable[[], weaviate.WeaviateClient]

    def facets(self, name: str) -> Facets:
        client = self.weaviate()
        info = get_collection(client, name, with_count=False)  # NotFound: 404
        store = ImageStore(client, info.model_id)

        def counts(prop: str) -> dict[str, int]:
            return store.value_counts(name, prop, FACET_LIMIT)

        months = dict(sorted(counts("taken_month").items()))
        years: dict[str, int] = {}
        for month, count in months.items():
            years[month[:4]] = years.get(month[:4], 0) + count
        return Facets(
            collection=name,
            total=store.count(name),
            years=years,
            months=months,
            cameras=counts("camera"),
            lenses=counts("lens"),
            countries=counts("country"),
            regions=counts("region"),
            cities=counts("city"),
        )
