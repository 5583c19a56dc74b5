"""Reading every object of a filtered set, past Weaviate's 10,000-result window.

Weaviate's cursor (`after`) cannot be combined with a filter, so pages are keyed on a property that is
unique within the filtered set: ``key > last`` with a sort on ``key``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import weaviate
from weaviate.classes.query import Filter, Sort
from weaviate.exceptions import WeaviateQueryError

from indexer.store.images import is_missing_class
from indexer.store.types import WhereFilter

PAGE = 1000


def scan(
    collection: weaviate.collections.Collection[Any, Any],
    filters: WhereFilter,
    key: str,
    *,
    properties: list[str] | None = None,
    include_vector: bool = False,
    page: int = PAGE,
) -> Iterator[list[Any]]:
    """Pages of objects (weaviate Object) matching ``filters``, ordered by ``key``."""
    if properties is not None and key not in properties:
        properties = [*properties, key]
    last: str | None = None
    while True:
        where = (
            filters if last is None else Filter.all_of([filters, Filter.by_property(key).greater_than(last)])
        )
        try:
            result = collection.query.fetch_objects(
                filters=where,
                limit=page,
                sort=Sort.by_property(key, ascending=True),
                include_vector=include_vector,
                return_properties=properties,
            )
        except WeaviateQueryError as exc:
            if is_missing_class(exc):  # no such index (yet): nothing to read
                return
            raise
        objects = list(result.objects)
        if not objects:
            return
        yield objects
        if len(objects) < page:
            return
        last = str(objects[-1].properties[key])
