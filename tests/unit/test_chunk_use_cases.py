"""The job's kind picks the use case that runs its chunks on the shared ingest pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

from indexer.jobs.store import REEMBED
from indexer.pipeline.ingest import IngestUseCase
from indexer.pipeline.reembed import ReembedUseCase
from indexer.pipeline.runner import use_case_for
from indexer.store.collections import CollectionInfo

INFO = CollectionInfo(name="trip", model_id="old-model", created_at=datetime.now(UTC))
OPTIONS = {"from_model": "old-model", "to_model": "new-model"}


def test_an_ingest_writes_the_collections_own_model_with_thumbnails() -> None:
    for kind in ("upload", "zip", "folder", "urls"):
        use = use_case_for(kind)
        assert isinstance(use, IngestUseCase) and use.thumbnails
        assert use.model_id(INFO, {}) == "old-model"


def test_a_reembed_writes_the_target_model_and_keeps_the_stored_thumbnails() -> None:
    use = use_case_for(REEMBED)
    assert isinstance(use, ReembedUseCase) and not use.thumbnails
    assert use.model_id(INFO, OPTIONS) == "new-model"
