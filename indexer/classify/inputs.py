"""What to classify: the vectors of an uploaded image, a stored image, or crops of either."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from indexer.classify.boxes import BoxFormat, crop, resolve_boxes
from indexer.classify.references import Encoder, stored_vectors
from indexer.errors import InvalidInput, NotFound, require_model
from indexer.storage.blobs import BlobStore
from indexer.store.images import ImageStore, check_image_id


@dataclass(frozen=True, eq=False)
class Inputs:
    vectors: NDArray[np.float32]
    boxes: list[tuple[int, int, int, int]] | None
    width: int | None = None
    height: int | None = None


def image_inputs(
    encoder: Encoder,
    images: ImageStore,
    blobs: BlobStore,
    max_pixels: int,
    *,
    data: bytes | None = None,
    image_id: str | None = None,
    boxes: list[list[float]] | None = None,
    box_format: BoxFormat = "auto",
) -> Inputs:
    """The vectors to classify: the whole image (an upload, or a stored id's stored vector), or one crop
    per box (the upload's pixels, or the stored original's from the blob store), encoded in one batch."""
    if (data is None) == (image_id is None):
        raise InvalidInput("give either an uploaded `image` or an `image_id`")
    if (data is not None or boxes is not None) and encoder.model_id != images.model_id:
        require_model(
            "the class set's collection",
            images.model_id,
            encoder.model_id,
            hint="stored ids without boxes still classify from their stored vectors",
        )
    if boxes is None:
        if data is not None:
            decoded = encoder.decoder.decode(data, max_pixels, min_side=encoder.min_decode_side)
            return Inputs(encoder.encode_images([decoded]), None)
        assert image_id is not None
        return Inputs(stored_vector(images, image_id)[None, :], None)
    if data is None:
        assert image_id is not None
        record, _ = images.get(check_image_id(image_id))
        data = blobs.read_original(record.sha256)
    decoded = encoder.decoder.decode(data, max_pixels)  # full resolution: boxes are in the original's pixels
    height, width = decoded.pixels.shape[:2]
    rects = resolve_boxes(boxes, width, height, box_format)
    crops = [crop(decoded.pixels, rect) for rect in rects]
    return Inputs(encoder.encode_images(crops), rects, width, height)


def stored_vector(images: ImageStore, image_id: str) -> NDArray[np.float32]:
    """The stored vector of the image to classify: NotFound (404) when this model's images do not hold
    it, as for every path that takes one image by id (search, similar, boxes)."""
    try:
        return stored_vectors(images, [image_id])[image_id]
    except InvalidInput as exc:
        if "unknown_image_ids" not in exc.details:
            raise  # a malformed id: 400
        raise NotFound(f"unknown image {image_id!r}", {"image_id": image_id}) from exc
