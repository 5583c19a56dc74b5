"""Collections: create, list, get (with counts), delete."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field

from indexer.services.collections import CollectionInfo
from indexer.services.facets import Facets
from search_api.logs import current_request_id
from search_api.routes.uploads import JobAccepted, accepted
from search_api.services import services
from search_api.validation import endpoint, json_body, parse, respond

bp = Blueprint("collections", __name__)


class CreateCollection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    model_id: str | None = Field(default=None, description="defaults to the service's model")
    description: str = Field(default="", max_length=2000)


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


@bp.post("/collections")
@endpoint(
    "Create a collection bound to a model",
    body=CreateCollection,
    response=CollectionInfo,
    status=201,
    tags=["collections"],
)
def create() -> tuple[Response, int]:
    req = parse(CreateCollection, json_body())
    return respond(services().collections.create(req.name, req.model_id, req.description), 201)


@bp.get("/collections")
@endpoint("List collections with their image counts", response=CollectionList, tags=["collections"])
def list_all() -> tuple[Response, int]:
    return respond(CollectionList(collections=services().collections.list()))


@bp.get("/collections/<name>")
@endpoint("Get a collection with its image count", response=CollectionInfo, tags=["collections"])
def get(name: str) -> tuple[Response, int]:
    return respond(services().collections.get(name))


@bp.get("/collections/<name>/facets")
@endpoint(
    "Counts of a collection's images by the year and month they were taken, camera, lens, country, region "
    "and city (the most common 500 values of each); images without a value are not counted",
    response=Facets,
    tags=["collections"],
)
def facets(name: str) -> tuple[Response, int]:
    return respond(services().facets.facets(name))


@bp.post("/collections/<name>/reembed")
@endpoint(
    "Re-embed a collection for the service's model from the stored originals; searches keep using the old "
    "vectors until every image is done, then the collection switches",
    response=JobAccepted,
    status=202,
    tags=["collections"],
)
def reembed(name: str) -> tuple[Response, int]:
    return accepted(services().reembed.start(name, current_request_id()))


@bp.delete("/collections/<name>")
@endpoint("Delete a collection and its images", status=204, tags=["collections"])
def delete(name: str) -> tuple[str, int]:
    services().collections.delete(name)
    return "", 204
