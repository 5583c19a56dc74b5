"""What a search asks for: the request models (validated once, shared with the OpenAPI document) and the
caps on them (MAX_SEARCH_LIMIT, SEARCH_SORT_WINDOW, SEARCH_MAX_QUERIES)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from indexer.errors import InvalidInput

WEAVIATE_MAX_RESULTS = 10_000
DEFAULT_SORT_WINDOW = 1000  # Settings.search_sort_window
SORT_FIELDS = {
    "ingested_at",
    "filename",
    "width",
    "height",
    "bytes",
    "format",
    "taken_at",
    "camera",
    "lens",
    "focal_length_mm",
    "exposure_s",
    "iso",
    "altitude",
    "country",
    "city",
}
MAX_NEAR_KM = 20_040.0  # half the Earth's circumference: anything farther is everywhere


def _check_year(value: datetime | None) -> datetime | None:
    # Weaviate keeps dates as int64 nanoseconds: outside these years a filter would wrap around.
    if value is not None and not 1678 <= value.year <= 2261:
        raise ValueError("dates must lie between the years 1678 and 2261")
    return value


class Near(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90, description="latitude in degrees")
    lon: float = Field(ge=-180, le=180, description="longitude in degrees")
    km: float = Field(gt=0, le=MAX_NEAR_KM, description="radius in kilometres")


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
    taken_after: datetime | None = Field(
        default=None,
        description="taken at or after this time (a time without a zone is UTC; photos without an offset "
        "compare their wall-clock time)",
    )
    taken_before: datetime | None = Field(default=None, description="taken before this time")
    camera: str | None = Field(default=None, description='the camera, as facets name it ("Canon EOS R5")')
    lens: str | None = Field(default=None, description="the lens, as facets name it")
    country: str | None = Field(default=None, description='the country\'s name ("France") or code ("FR")')
    region: str | None = Field(default=None, description="the region (state, province)")
    city: str | None = Field(default=None, description="the nearest city or town")
    near: Near | None = Field(default=None, description="taken within `km` of a position (GPS)")

    @field_validator("created_after", "created_before", "taken_after", "taken_before")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        return _check_year(value)


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


class SearchMode(StrEnum):
    VECTOR = "vector"
    HYBRID = "hybrid"
    KEYWORD = "keyword"


class TextSearchRequest(SearchOptions):
    query: str | None = Field(default=None, min_length=1)
    positive: list[WeightedQuery] = Field(default_factory=list)
    negative: list[WeightedQuery] = Field(default_factory=list)
    mode: SearchMode = Field(
        default=SearchMode.VECTOR,
        description="vector: CLIP similarity (score = cosine); keyword: BM25 over file name, path, tags, "
        "places, camera, lens and string metadata (score = BM25); hybrid: both, fused by Weaviate's "
        "relative score fusion (score 0..1)",
    )
    alpha: float = Field(
        default=0.5, ge=0.0, le=1.0, description="hybrid only: 1 = vector alone, 0 = keywords alone"
    )

    @model_validator(mode="after")
    def _one_query(self) -> TextSearchRequest:
        if (self.query is None) == (not self.positive):
            raise ValueError("give either `query` or weighted `positive` queries (and optional `negative`)")
        if self.mode is not SearchMode.VECTOR and self.min_score is not None:
            raise ValueError("min_score is a cosine cut-off: it applies in mode `vector` only")
        return self

    def keywords(self) -> str:
        """The text of the keyword half: the query, or the positive queries' texts."""
        return self.query if self.query is not None else " ".join(q.text for q in self.positive)

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
