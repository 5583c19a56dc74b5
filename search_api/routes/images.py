"""Stored images: metadata, thumbnail, original file, delete one or many."""

from __future__ import annotations

import io

from flask import Blueprint, Response, send_file
from pydantic import BaseModel, ConfigDict

from indexer.limits import check_filters
from indexer.media.decode import FORMAT_MIME
from indexer.search import SearchFilters, build_filters
from indexer.storage.gc import delete_images
from indexer.store.images import ImageRecord, find_image
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
    _, record, _ = find_image(services().weaviate, image_id)
    return respond(ImageView.of(record))


def _send(path_of: str, image_id: str, mimetype: str | None) -> Response:
    svc = services()
    _, record, _ = find_image(svc.weaviate, image_id)
    blobs = svc.blobs
    part = "thumbnail" if path_of == "thumbnail" else "original"
    mimetype = mimetype or FORMAT_MIME.get(record.format, "application/octet-stream")
    if blobs.root is not None:  # a local directory: let the server stream the file
        return send_file(blobs.existing_path(record.sha256, part), mimetype=mimetype, max_age=86400)
    # the object store (BLOB_STORE_URL): content-addressed, so the hash is the ETag
    data = io.BytesIO(blobs.read(record.sha256, part))
    return send_file(data, mimetype=mimetype, max_age=86400, etag=f"{record.sha256}-{part}")


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
    svc = services()
    store, record, _ = find_image(svc.weaviate, image_id)
    store.delete(record.id)
    svc.blob_collector().collect([record.sha256])  # the blobs go unless another object shares them
    return "", 204


@bp.post("/images/delete")
@endpoint(
    "Delete every image of a collection that matches a filter",
    body=DeleteImages,
    response=Deleted,
    tags=["images"],
)
def delete_many() -> tuple[Response, int]:
    svc = services()
    req = parse(DeleteImages, json_body())
    info = svc.collection(req.collection)
    check_filters(req.filters, svc.settings)
    filters = build_filters(info.name, req.filters)
    deleted = delete_images(svc.image_store(info), filters, svc.blob_collector())
    return respond(Deleted(deleted=deleted))
