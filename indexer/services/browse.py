"""Pages of a collection's images without a query: the newest first, or those that match filters (a date
range, a place, a camera: the page's pickers with an empty search box), in a stored field's order, with
how many match."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from weaviate.classes.query import Sort

from indexer.errors import InvalidInput
from indexer.limits import check_filters
from indexer.search import SearchFilters, build_filters
from indexer.services.backends import Collections
from indexer.store.collections import CollectionInfo
from indexer.store.images import HIT_PROPERTIES, ImageRecord, in_collection
from indexer.store.types import WhereFilter

# Weaviate's QUERY_MAXIMUM_RESULTS (10,000): offset + limit past it is refused by the server.
MAX_WINDOW = 10_000

BrowseOrder = Literal["-taken_at", "taken_at", "-ingested_at", "ingested_at", "filename", "-filename"]


@dataclass(frozen=True)
class ImagePages:
    backends: Collections

    def newest(self, name: str, limit: int, offset: int) -> tuple[list[ImageRecord], int]:
        """A page of the collection's images, newest first, and how many it has."""
        info = self.backends.collection(name)
        return self._page(info, in_collection(info.name), "-ingested_at", limit, offset, None)

    def filtered(
        self, name: str, filters: SearchFilters, order: BrowseOrder, limit: int, offset: int
    ) -> tuple[list[ImageRecord], int]:
        """A page of the images that match ``filters`` in ``order`` ('-' first: descending; images without
        the field come last when descending, first when ascending), and how many match."""
        check_filters(filters, self.backends.settings)
        info = self.backends.collection(name)
        return self._page(info, build_filters(info.name, filters), order, limit, offset, filters)

    def _page(
        self,
        info: CollectionInfo,
        where: WhereFilter,
        order: str,
        limit: int,
        offset: int,
        filters: SearchFilters | None,
    ) -> tuple[list[ImageRecord], int]:
        if offset + limit > MAX_WINDOW:
            raise InvalidInput(
                f"offset + limit must not exceed {MAX_WINDOW} (the vector store's window)",
                {"offset": offset, "limit": limit},
            )
        store = self.backends.image_store(info)
        found = store.collection.query.fetch_objects(
            filters=where,
            limit=limit,
            offset=offset or None,
            sort=Sort.by_property(order.removeprefix("-"), ascending=not order.startswith("-")),
            return_properties=HIT_PROPERTIES,
        )
        images = [ImageRecord.from_object(obj.uuid, dict(obj.properties)) for obj in found.objects]
        if filters is None:
            return images, store.count(info.name)
        total = store.collection.aggregate.over_all(filters=where, total_count=True).total_count
        return images, int(total or 0)
