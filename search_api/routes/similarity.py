"""The similarity network: nearest neighbours of an image, near-duplicate groups, and the edge list."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field

from indexer.services.similarity import MAX_PAIRS
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
    limit: int = Field(default=10_000, ge=1, le=MAX_PAIRS, description="edges in the JSON answer")


class Edge(BaseModel):
    source: str
    target: str
    score: float


class EdgeList(BaseModel):
    collection: str
    threshold: float
    total: int = Field(description="pairs at or above the threshold")
    truncated: bool = Field(description="more pairs than `limit`: the strongest are listed")
    edges: list[Edge]


class EdgesCsvQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(default=0.9, ge=-1.0, le=1.0)


@bp.get("/images/<image_id>/similar")
@endpoint(
    "The nearest neighbours of an image in its collection",
    query=SimilarQuery,
    response=SimilarResponse,
    tags=["similarity"],
)
def neighbours(image_id: str) -> tuple[Response, int]:
    query = parse_query(SimilarQuery)  # image_id: checked at the edge (path_ids), 400 when malformed
    hits = services().search.similar(image_id, query.limit, query.min_score)
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
    query = parse_query(DuplicatesQuery)
    page = services().similarity.duplicates(name, query.threshold, query.limit, query.offset)
    return respond(
        DuplicatesResponse(
            collection=name,
            threshold=query.threshold,
            total_groups=page.total_groups,
            images=page.images,
            groups=[
                DuplicateGroup(
                    size=g.size,
                    min_score=g.min_score,
                    max_score=g.max_score,
                    members=[Member(id=i, filename=f) for i, f in g.members],
                )
                for g in page.groups
            ],
            limit=query.limit,
            offset=query.offset,
        )
    )


@bp.get("/collections/<name>/edges")
@endpoint(
    "The edge list of the similarity network as JSON: every pair at or above `threshold`, strongest "
    "first (see edges.csv for the whole list as CSV)",
    query=EdgesQuery,
    response=EdgeList,
    tags=["similarity"],
)
def edges(name: str) -> tuple[Response, int]:
    query = parse_query(EdgesQuery)
    pairs = services().similarity.edges(name, query.threshold)
    return respond(
        EdgeList(
            collection=name,
            threshold=query.threshold,
            total=len(pairs),
            truncated=len(pairs) > query.limit,
            edges=[Edge(source=a, target=b, score=s) for a, b, s in pairs[: query.limit]],
        )
    )


@bp.get("/collections/<name>/edges.csv")
@endpoint(
    "The edge list of the similarity network as CSV (source,target,score), strongest first",
    query=EdgesCsvQuery,
    binary_response="text/csv",
    tags=["similarity"],
)
def edges_csv(name: str) -> Response:
    query = parse_query(EdgesCsvQuery)
    pairs = services().similarity.edges(name, query.threshold)

    def rows() -> Iterator[str]:
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

    filename = f"{name}-edges-{query.threshold}.csv"
    return Response(
        rows(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
