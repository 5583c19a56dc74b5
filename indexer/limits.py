"""Caps on what a request may store or ask for: tags, metadata, filters. Over a cap is InvalidInput (400).

The limits come from Settings (MAX_TAGS, MAX_TAG_LENGTH, MAX_METADATA_KEYS, MAX_METADATA_KEY_LENGTH,
MAX_METADATA_VALUE_LENGTH, MAX_METADATA_BYTES), so one image record and one filter stay small: every
tag and metadata pair is copied onto each image of a job and into Weaviate's inverted index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from indexer.errors import InvalidInput
from indexer.settings import Settings

if TYPE_CHECKING:
    from indexer.search import SearchFilters


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def check_tags(tags: Sequence[str], settings: Settings, field: str = "tags") -> None:
    if len(tags) > settings.max_tags:
        raise InvalidInput(
            f"{len(tags)} {field}, over the limit of {settings.max_tags} (MAX_TAGS)",
            {"field": field, "count": len(tags), "limit": settings.max_tags},
        )
    for tag in tags:
        if len(tag) > settings.max_tag_length:
            raise InvalidInput(
                f"a tag of {len(tag)} characters, over the limit of {settings.max_tag_length} "
                "(MAX_TAG_LENGTH)",
                {"field": field, "length": len(tag), "limit": settings.max_tag_length},
            )


def check_metadata(metadata: Mapping[str, Any], settings: Settings, field: str = "metadata") -> None:
    if len(metadata) > settings.max_metadata_keys:
        raise InvalidInput(
            f"{len(metadata)} {field} keys, over the limit of {settings.max_metadata_keys} "
            "(MAX_METADATA_KEYS)",
            {"field": field, "count": len(metadata), "limit": settings.max_metadata_keys},
        )
    for key, value in metadata.items():
        if not key or len(key) > settings.max_metadata_key_length:
            raise InvalidInput(
                f"{field} key of {len(key)} characters: keys take 1 to {settings.max_metadata_key_length} "
                "(MAX_METADATA_KEY_LENGTH)",
                {"field": field, "length": len(key), "limit": settings.max_metadata_key_length},
            )
        size = len(value) if isinstance(value, str) else _json_size(value)
        if size > settings.max_metadata_value_length:
            raise InvalidInput(
                f"{field} value of {key[:64]!r} is {size} characters, over the limit of "
                f"{settings.max_metadata_value_length} (MAX_METADATA_VALUE_LENGTH)",
                {
                    "field": field,
                    "key": key[:64],
                    "length": size,
                    "limit": settings.max_metadata_value_length,
                },
            )
    total = _json_size(metadata)
    if total > settings.max_metadata_bytes:
        raise InvalidInput(
            f"{field} is {total} bytes of JSON, over the limit of {settings.max_metadata_bytes} "
            "(MAX_METADATA_BYTES)",
            {"field": field, "bytes": total, "limit": settings.max_metadata_bytes},
        )


def check_ingest_options(tags: Sequence[str], metadata: Mapping[str, Any], settings: Settings) -> None:
    """The tags and metadata that an ingest job writes onto every one of its images."""
    check_tags(tags, settings)
    check_metadata(metadata, settings)


def check_filters(filters: SearchFilters, settings: Settings) -> None:
    """Search and delete filters: as many values as one image may hold, no more."""
    for name in ("tags", "tags_any", "labels", "labels_any"):
        check_tags(getattr(filters, name), settings, f"filters.{name}")
    check_metadata(filters.metadata, settings, "filters.metadata")
