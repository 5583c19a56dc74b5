"""`sort_by`: order the best matches by a field instead of score (after the min_score cut)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from indexer.store.images import ScoredImage

_NUMBER, _TEXT, _TIME, _OTHER = 0, 1, 2, 3


def sort_key(field: str) -> Callable[[ScoredImage], tuple[bool, Any]]:
    """A key that orders any mix of values (a metadata key can hold a number on one image and a text on
    another): numbers (booleans as 0/1), then texts, then times, then anything else by its JSON text;
    the flag marks a missing value (None), which sorts last in either direction."""

    def key(hit: ScoredImage) -> tuple[bool, Any]:
        if field.startswith("metadata."):
            value = hit.image.metadata.get(field[9:])
        else:
            value = getattr(hit.image, field)
        if value is None:
            return (True, (_OTHER, ""))
        if isinstance(value, bool | int | float):
            number = float(value)
            return (False, (_NUMBER, number if number == number else float("inf")))  # NaN after numbers
        if isinstance(value, str):
            return (False, (_TEXT, value))
        if isinstance(value, datetime):
            return (False, (_TIME, value.timestamp()))
        return (False, (_OTHER, json.dumps(value, sort_keys=True, default=str)))

    return key


def sort_hits(hits: list[ScoredImage], sort_by: str) -> list[ScoredImage]:
    """`sort_by` is a field, '-' first for descending. Ties keep the score order (a stable sort), and
    images without the field come last either way."""
    key = sort_key(sort_by.removeprefix("-"))
    keyed = [(key(h), h) for h in hits]
    present = [(k[1], h) for k, h in keyed if not k[0]]
    missing = [h for k, h in keyed if k[0]]
    present.sort(key=lambda pair: pair[0], reverse=sort_by.startswith("-"))
    return [h for _, h in present] + missing
