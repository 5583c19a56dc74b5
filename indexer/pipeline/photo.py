"""An ingested image's photo fields: its EXIF/XMP metadata (indexer/media/exif.py), the file's mtime for
a server-side folder's file without a time of its own, and the place of its GPS position
(indexer/media/places.py), as the ImageRecord fields that store them."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from indexer.media import exif
from indexer.media.places import place_of
from indexer.sources.items import FolderItem, JobItem


def camera_name(make: str, model: str) -> str:
    """ "Canon EOS R5", not "Canon Canon EOS R5": the make once, before a model that does not repeat it."""
    if make and model and model.lower().startswith(make.split()[0].lower()):
        return model
    return f"{make} {model}".strip()


def photo_fields(meta: exif.PhotoMetadata, item: JobItem) -> dict[str, Any]:
    """The ImageRecord fields of an image's photo metadata (read in the decode process, with the image's
    limits); {} when it has none."""
    if isinstance(item, FolderItem):
        with contextlib.suppress(OSError):  # gone since it was read: no mtime
            meta = meta.with_mtime(os.stat(item.path).st_mtime)
    if meta == exif.EMPTY:
        return {}
    fields: dict[str, Any] = {
        "taken_at": meta.taken_at,
        "taken_at_offset": meta.offset,
        "taken_at_local": meta.local,
        "taken_at_source": meta.source,
        "taken_month": meta.taken_at.strftime("%Y-%m") if meta.taken_at else "",
        "camera": camera_name(meta.camera_make, meta.camera_model),
        "camera_make": meta.camera_make,
        "camera_model": meta.camera_model,
        "lens": meta.lens,
        "focal_length_mm": meta.focal_length_mm,
        "exposure_s": meta.exposure_s,
        "iso": meta.iso,
        "altitude": meta.altitude,
    }
    if meta.latitude is not None and meta.longitude is not None:
        place = place_of(meta.latitude, meta.longitude)
        fields["location"] = {"latitude": meta.latitude, "longitude": meta.longitude}
        fields.update(
            country=place.country, country_code=place.country_code, region=place.region, city=place.city
        )
    return fields
