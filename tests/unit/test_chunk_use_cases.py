"""The job's kind picks the use case that runs its chunks on the shared ingest pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from indexer.jobs.kinds import JobKind
from indexer.pipeline.chunk import VectorUseCase
from indexer.pipeline.ingest import IngestUseCase
from indexer.pipeline.labelling import LabelUseCase
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
    use = use_case_for(JobKind.REEMBED)
    assert isinstance(use, ReembedUseCase) and not use.thumbnails
    assert use.model_id(INFO, OPTIONS) == "new-model"


@pytest.mark.parametrize("kind", ["ingest", "relabel", ""])
def test_an_unknown_kind_is_an_error_not_an_ingest(kind: str) -> None:
    with pytest.raises(ValueError, match="has no chunk use case"):
        use_case_for(kind)


def test_a_label_job_runs_on_the_same_runner_from_stored_vectors() -> None:
    use = use_case_for(JobKind.LABEL)
    assert isinstance(use, LabelUseCase) and isinstance(use, VectorUseCase)
    assert not isinstance(use_case_for(JobKind.UPLOAD), VectorUseCase)
