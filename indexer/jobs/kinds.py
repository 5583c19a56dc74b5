"""The kinds of job. A job record keeps its kind as the enum's value; a value that is not one of these is
an error wherever a kind decides what runs (`JobKind(value)` raises ValueError)."""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    UPLOAD = "upload"  # files uploaded in one request, or an open upload session
    ZIP = "zip"
    FOLDER = "folder"
    URLS = "urls"
    REEMBED = "reembed"  # moves a collection's images to another model
    LABEL = "label"  # labels a collection's images with a class set or classifier
    SYNC = "sync"  # keeps a collection in step with a server-side folder (indexer/sync/)

    @property
    def has_final_step(self) -> bool:
        """Whether the job ends with a step of its own once every item has an outcome (a re-embed
        switches its collection to the new model): its last outcome does not complete it, the worker that
        runs the step does (indexer.pipeline.runner), so `completed` is never reported before the step."""
        return self in FINAL_STEP_KINDS


FINAL_STEP_KINDS = frozenset({JobKind.REEMBED})
