"""The similarity network: nearest neighbours of an image, near-duplicate groups, and the edge list."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Literal

from flask import Blueprint, Response, stream_with_context
from pydantic import BaseModel, ConfigDict, Field

from indexer.similarity import collection_vectors, components, iter_edges, pairs_above, similar
from indexer.store.images import find_image
from search_api.routes.images import ImageView
from search_api.services import services
from search_api.validation import endpoint, parse_query, respond

bp = Blueprint("similarity", __name__)


class SimilarQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=10, ge=1, le=1000)
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)


class Neighbour(ImageView):
    score: float


class SimilarResponse(BaseModel):
    image_id: str
    results: list[Neighbour]
    count: int


class DuplicatesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(default=0.95, ge=-1.0, le=1.0, description="cosine similarity of a pair")
    limit: int = Field(default=20, ge=1, le=1000, description="groups per page")
    offset: int = Field(default=0, ge=0)


class Member(BaseModel):
    id: str
    filename: str


class DuplicateGroup(BaseModel):
    size: int
    min_score: float = Field(description="the weakest link inside the group")
    max_score: float
    members: list[Member]


class DuplicatesResponse(BaseModel):
    collection: str
    threshold: float
    total_groups: int
    images: int = Field(description="images in the collection")
    groups: list[DuplicateGroup]
    limit: int
    offset: int


class EdgesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(default=0.9, ge=-1.0, le=1.0)
    format: Literal["csv", "json"] = "csv"


@bp.get("/images/<image_id>/similar")
@endpoint(
    "The nearest neighbours of an image in its collection",
    query=SimilarQuery,
    response=SimilarResponse,
    tags=["similarity"],
)
def neighbours(image_id: str) -> tuple[Response, int]:
    query = parse_query(SimilarQuery)
    store, _, _ = find_image(services().weaviate, image_id)
    hits = similar(store, image_id, query.limit, query.min_score)
    results = [Neighbour(**ImageView.of(h.image).model_dump(), score=h.score) for h in hits]
    return respond(SimilarResponse(image_id=image_id, results=results, count=len(results)))


@bp.get("/collections/<name>/duplicates")
@endpoint(
    "Groups of near-duplicates: connected components of the pairs at or above `threshold`, largest first",
    query=DuplicatesQuery,
    response=DuplicatesResponse,
    tags=["similarity"],
)
def duplicates(name: str) -> tuple[Response, int]:
    svc = services()
    query = parse_query(DuplicatesQuery)
    info = svc.collection(name)
    data = collection_vectors(svc.image_store(info), name, svc.settings.similarity_max_images)
    rows, cols, scores = pairs_above(data.vectors, query.threshold)
    groups = components(len(data.ids), rows, cols)
    group_of = {m: g for g, members in enumerate(groups) for m in members}
    low = [1.0] * len(groups)
    high = [-1.0] * len(groups)
    for a, s in zip(rows.tolist(), scores.tolist(), strict=True):
        g = group_of[a]
        low[g], high[g] = min(low[g], s), max(high[g], s)
    page = range(query.offset, min(len(groups), query.offset + query.limit))
    return respond(
        DuplicatesResponse(
            collection=name,
            threshold=query.threshold,
            total_groups=len(groups),
            images=len(data.ids),
            groups=[
                DuplicateGroup(
                    size=len(groups[g]),
                    min_score=round(low[g], 6),
                    max_score=round(high[g], 6),
                    members=[Member(id=data.ids[m], filename=data.filenames[m]) for m in groups[g]],
                )
                for g in page
            ],
            limit=query.limit,
            offset=query.offset,
        )
    )


@bp.get("/collections/<name>/edges")
@endpoint(
    "The edge list of the similarity network: every pair at or above `threshold` (CSV or JSON), "
    "strongest first",
    query=EdgesQuery,
    binary_response="text/csv",
    tags=["similarity"],
)
def edges(name: str) -> Response:
    svc = services()
    query = parse_query(EdgesQuery)
    info = svc.collection(name)
    data = collection_vectors(svc.image_store(info), name, svc.settings.similarity_max_images)
    pairs = iter_edges(data, query.threshold)
    filename = f"{name}-edges-{query.threshold}.{query.format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}

    def as_csv() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["source", "target", "score"])
        for i, row in enumerate(pairs):
            writer.writerow(row)
            if i % 1000 == 999:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    def as_json() -> Iterator[str]:
        import json

        yield json.dumps({"collection": name, "threshold": query.threshold}).rstrip("}") + ', "edges": ['
        for i, (source, target, score) in enumerate(pairs):
            yield ("," if i else "") + json.dumps({"source": source, "target": target, "score": score})
        yield "]}"

    if query.format == "csv":
        return Response(stream_with_context(as_csv()), mimetype="text/csv", headers=headers)
    return Response(stream_with_context(as_json()), mimetype="application/json", headers=headers)
