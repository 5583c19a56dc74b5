"""The stored-image use cases: an image's record, its thumbnail or original file, and deleting one
image or every image of a collection that matches a filter (their blobs go unless another image shares
them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import weaviate

from indexer.limits import check_filters
from indexer.media.decode import FORMAT_MIME
from indexer.search import SearchFilters, build_filters
from indexer.settings import Settings
from indexer.storage.blobs import BlobStore
from indexer.storage.gc import BlobCollector, delete_images
from indexer.store.collections import CollectionInfo, get_collection
from indexer.store.images import ImageRecord, ImageStore, find_image

__all__ = ["ImageFile", "ImageRecord", "ImagesService", "SearchFilters"]


@dataclass(frozen=True)
class ImageFile:
    """One stored file of an image: a local path (the server streams it), or its bytes (from the object
    store; content-addressed, so ``etag`` names it)."""

    mimetype: str
    path: Path | None = None
    data: bytes | None = None
    etag: str = ""


@dataclass(frozen=True)
class ImagesService:
    settings: Settings
    weaviate: Callable[[], weaviate.WeaviateClient]
    blobs: Callable[[], BlobStore]
    collector: Callable[[], BlobCollector]

    def get(self, image_id: str) -> ImageRecord:
        _, record, _ = find_image(self.weaviate(), image_id)
        return record

    def file(self, image_id: str, part: Literal["thumbnail", "original"], mimetype: str | None) -> ImageFile:
        """The image's thumbnail or original; ``mimetype`` defaults to the original's format's."""
        _, record, _ = find_image(self.weaviate(), image_id)
        blobs = self.blobs()
        mimetype = mimetype or FORMAT_MIME.get(record.format, "application/octet-stream")
        if blobs.root is not None:  # a local directory
            return ImageFile(mimetype, path=blobs.existing_path(record.sha256, part))
        return ImageFile(mimetype, data=blobs.read(record.sha256, part), etag=f"{record.sha256}-{part}")

    def delete(self, image_id: str) -> None:
        store, record, _ = find_image(self.weaviate(), image_id)
        store.delete(record.id)
        self.collector().collect([record.sha256])  # the blobs go unless another object shares them

    def delete_matching(self, collection: str, filters: SearchFilters) -> int:
        """Delete every image of the collection that matches; returns how many."""
        client = self.weaviate()
        info: CollectionInfo = get_collection(client, collection, with_count=False)
        check_filters(filters, self.settings)
        where = build_filters(info.name, filters)
        return delete_images(ImageStore(client, info.model_id), where, self.collector())
