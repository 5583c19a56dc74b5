"""The ingest use case: plan uploads, zip archives, server-side folders and URLs into job items, then
start the job through the JobQueue port. Re-embed is its own use case (indexer/services/reembed.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from indexer.errors import InvalidInput
from indexer.jobs.kinds import JobKind
from indexer.jobs.store import new_job_id
from indexer.limits import check_ingest_options
from indexer.services.backends import Collections
from indexer.services.jobs import JobsService
from indexer.services.queue import TaskKind
from indexer.sources.items import JobItem, RejectedItem
from indexer.sources.plan import plan_folder, plan_urls, plan_zip
from indexer.storage.staging import Upload, remove_staging, stage_uploads, stage_zip_items
from indexer.store.collections import CollectionInfo

__all__ = ["IngestService", "JobStarted", "Rejected", "Upload", "check_ingest_options", "stage_uploads"]


class Rejected(BaseModel):
    file: str
    reason: str


class JobStarted(BaseModel):
    """What a started job tells its caller: the id, and which inputs were accepted or refused up front."""

    job_id: str
    accepted: int
    rejected: list[Rejected]


@dataclass
class IngestService:
    backends: Collections
    jobs: JobsService

    def encodable_collection(self, name: str | CollectionInfo) -> CollectionInfo:
        """A collection whose model this service runs (else ModelMismatch, 409). A CollectionInfo that
        this method returned before is passed through, so a transport that checks first pays once."""
        if isinstance(name, CollectionInfo):
            return name
        return self.backends.encodable_collection(name)

    def upload(
        self,
        name: str | CollectionInfo,
        files: list[Upload],
        options: BaseModel,
        request_id: str | None = None,
    ) -> JobStarted:
        info = self.encodable_collection(name)
        if not files:
            raise InvalidInput("no files: send multipart/form-data with one or more `files` parts")
        job_id = new_job_id()
        try:
            items = stage_uploads(self.backends.settings, job_id, None, files)
        except Exception:  # a later part refused (or a disk error): the parts staged before it go too
            remove_staging(self.backends.settings, job_id)
            raise
        return self._start(info, JobKind.UPLOAD, items, options, job_id, request_id)

    def zip(
        self,
        name: str | CollectionInfo,
        filename: str,
        save: Callable[[Path], None],
        options: BaseModel,
        request_id: str | None = None,
    ) -> JobStarted:
        """Stage the archive (``save`` writes it to the path given), plan its entries, start the job."""
        info = self.encodable_collection(name)
        job_id = new_job_id()
        staging = self.backends.settings.staging_dir / job_id
        staging.mkdir(parents=True, exist_ok=True)
        path = staging / "archive.zip"
        try:
            save(path)
            items = plan_zip(path, filename or "archive.zip", self.backends.settings)
            items = stage_zip_items(self.backends.settings, job_id, path, items)
        except Exception:  # whatever failed, the job's staging must not outlive it; re-raised
            remove_staging(self.backends.settings, job_id)
            raise
        return self._start(info, JobKind.ZIP, items, options, job_id, request_id)

    def folder(self, name: str, path: str, options: BaseModel, request_id: str | None = None) -> JobStarted:
        info = self.encodable_collection(name)
        items = plan_folder(path, self.backends.settings)
        return self._start(info, JobKind.FOLDER, items, options, new_job_id(), request_id)

    def urls(
        self, name: str, urls: list[str], options: BaseModel, request_id: str | None = None
    ) -> JobStarted:
        info = self.encodable_collection(name)
        items = plan_urls(urls, self.backends.settings)
        return self._start(info, JobKind.URLS, items, options, new_job_id(), request_id)

    def _start(
        self,
        info: CollectionInfo,
        kind: JobKind,
        items: list[JobItem],
        options: BaseModel,
        job_id: str,
        request_id: str | None,
    ) -> JobStarted:
        return start_ingest_job(
            self.backends, self.jobs, info, kind, items, options.model_dump(), job_id, request_id
        )


def start_ingest_job(
    backends: Collections,
    jobs: JobsService,
    info: CollectionInfo,
    kind: JobKind,
    items: Sequence[JobItem],
    options: dict[str, Any],
    job_id: str,
    request_id: str | None,
) -> JobStarted:
    """Record the job and queue one ingest task per chunk; refuse outright when nothing is usable."""
    refused = [Rejected(file=i.name, reason=i.reason) for i in items if isinstance(i, RejectedItem)]
    if not items or len(refused) == len(items):
        remove_staging(backends.settings, job_id)
        message = "nothing to index" if not items else "no usable image in the request"
        raise InvalidInput(message, {"rejected": [r.model_dump() for r in refused]})
    try:
        jobs.start(
            kind,
            info.name,
            [item.to_json() for item in items],
            task=TaskKind.INGEST_CHUNK,
            chunk_size=backends.settings.ingest_chunk_size,
            options=options,
            request_id=request_id,
            job_id=job_id,
        )
    except Exception:  # Redis down (a 503): nothing will read the staged files
        remove_staging(backends.settings, job_id)
        raise
    return JobStarted(job_id=job_id, accepted=len(items) - len(refused), rejected=refused)
