"""What a search asks for: the request models (validated once, shared with the OpenAPI document) and the
caps on them (MAX_SEARCH_LIMIT, SEARCH_SORT_WINDOW, SEARCH_MAX_QUERIES)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from indexer.errors import InvalidInput

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
