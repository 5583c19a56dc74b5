"""The one module that names the Weaviate client's filter type (it is private in weaviate-client v4:
`Filter.by_property(...)` and `Filter.all_of(...)` return `_Filters`)."""

from __future__ import annotations

from weaviate.classes.query import FilterReturn

# weaviate.classes.query.FilterReturn is the client's public name for what the Filter builders return.
WhereFilter = FilterReturn

__all__ = ["WhereFilter"]
