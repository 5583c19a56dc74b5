"""Stored images: metadata, thumbnail, original file, delete one or many."""

from __future__ import annotations

import io

from flask import Blueprint, Response, send_file
from pydantic import BaseModel, ConfigDict

from indexer.services.images import ImageRecord, SearchFilters
from search_api.services import services
from search_api.validation import endpoint, json_body, parse, respond

bp = Blueprint("images", __name__)


class ImageView(ImageRecord):
    thumbnail_url: str
    file_url: str

    @classmethod
    def of(cls, record: ImageRecord) -> ImageView:
        return cls(
            **record.model_dump(),
            thumbnail_url=f"/images/{record.id}/thumbnail",
            file_url=f"/images/{record.id}/file",
        )


class DeleteImages(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str
    filters: SearchFilters


class Deleted(BaseModel):
    deleted: int


@bp.get("/images/<image_id>")
@endpoint("An image's stored metadata", response=ImageView, tags=["images"])
def get(image_id: str) -> tuple[Response, int]:
    return respond(ImageView.of(services().images.get(image_id)))


def _send(path_of: str, image_id: str, mimetype: str | None) -> Response:
    found = services().images.file(image_id, "thumbnail" if path_of == "thumbnail" else "original", mimetype)
    if found.path is not None:  # a local directory: let the server stream the file
        return send_file(found.path, mimetype=found.mimetype, max_age=86400)
    # the object store (BLOB_STORE_URL): content-addressed, so the hash is the ETag
    data = io.BytesIO(found.data or b"")
    return send_file(data, mimetype=found.mimetype, max_age=86400, etag=found.etag)


@bp.get("/images/<image_id>/thumbnail")
@endpoint("The image's JPEG thumbnail", binary_response="image/jpeg", tags=["images"])
def thumbnail(image_id: str) -> Response:
    return _send("thumbnail", image_id, "image/jpeg")


@bp.get("/images/<image_id>/file")
@endpoint("The original file as uploaded", binary_response="image/*", tags=["images"])
def original(image_id: str) -> Response:
    return _send("file", image_id, None)


@bp.delete("/images/<image_id>")
@endpoint("Delete one image", status=204, tags=["images"])
def delete(image_id: str) -> tuple[str, int]:
    services().images.delete(image_id)  # the blobs go unless another object shares them
    return "", 204


@bp.post("/images/delete")
@endpoint(
    "Delete every image of a collection that matches a filter",
    body=DeleteImages,
    response=Deleted,
    tags=["images"],
)
def delete_many() -> tuple[Response, int]:
    req = parse(DeleteImages, json_body())
    return respond(Deleted(deleted=services().images.delete_matching(req.collection, req.filters)))
