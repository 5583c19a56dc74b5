"""ScorerCache: a class set's references are read once per version, never kept across a change, a
delete-and-create under the same name, or while the set is being created (version 0)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from indexer.classify.scorer import ScorerCache
from indexer.classify.store import ClassSetRecord, ClassStore, Kind, Reference, RefKind, new_record


class CountingStore:
    """Stands in for ClassStore.references only: counts the reads."""

    def __init__(self) -> None:
        self.reads = 0

    def references(self, record: ClassSetRecord) -> tuple[list[Reference], NDArray[np.float32]]:
        self.reads += 1
        refs = [Reference(class_name=c, kind=RefKind.RAW, sha256=c) for c in record.classes]
        return refs, np.eye(len(refs), 4, dtype=np.float32)


def record(version: int = 1, created_at: datetime | None = None) -> ClassSetRecord:
    made = new_record(Kind.CLASS_SET, "s", model_id="m", logit_scale=100.0, classes=["a", "b"])
    return made.model_copy(update={"version": version, "created_at": created_at or made.created_at})


def test_one_read_per_version_and_creation() -> None:
    fake = CountingStore()
    store = cast(ClassStore, cast(Any, fake))
    cache = ScorerCache()
    first = record()
    assert cache.get(store, first).references.classes == ["a", "b"]
    same = first.model_copy(update={"threshold": 0.3})  # another read of the same version
    scorer = cache.get(store, same)
    assert fake.reads == 1 and scorer.record is same, "the caller's copy of the record, cached references"

    cache.get(store, first.model_copy(update={"version": 2, "classes": ["a", "b", "c"]}))
    assert fake.reads == 2, "a new version reads the references again"

    again = first.model_copy(update={"created_at": first.created_at + timedelta(seconds=1)})
    cache.get(store, again)
    assert fake.reads == 3, "deleted and created again under the same name (version 1 again)"


def test_a_set_being_created_is_never_cached() -> None:
    fake = CountingStore()
    store = cast(ClassStore, cast(Any, fake))
    cache = ScorerCache()
    creating = record(version=0, created_at=datetime.now(UTC))
    cache.get(store, creating)
    cache.get(store, creating)
    assert fake.reads == 2
