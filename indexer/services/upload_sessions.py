"""The folder-upload use case (issue 16): one open job that many upload requests append to, a lookup of
the content hashes a collection already holds (so that a re-drop sends only what is missing), a close
that lets the job complete (the newest images, the page's first view, are indexer/services/browse.py).

The page: opens a job, hashes a batch of files, asks which hashes are known, uploads the missing files
in requests of at most `upload_max_files_per_request` files and `max_upload_bytes`, then closes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pydantic import BaseModel

from indexer.errors import Conflict, InvalidInput
from indexer.jobs.kinds import JobKind
from indexer.jobs.store import MAX_APPEND, JobReport, chunks, new_job_id
from indexer.services.backends import Collections
from indexer.services.ingest import Rejected
from indexer.services.jobs import JobsService
from indexer.services.open_jobs import forget_open_job, reserve_open_job, touch_open_job
from indexer.services.queue import ChunkPayload, TaskKind
from indexer.sources.items import JobItem, RejectedItem
from indexer.storage.staging import Upload, remove_staging, stage_uploads
from indexer.store.schema import image_uuid

UPLOAD_KIND = JobKind.UPLOAD


class Appended(BaseModel):
    job_id: str
    accepted: int
    rejected: list[Rejected]
    total: int


@dataclass
class UploadSessions:
    backends: Collections
    jobs: JobsService

    def open(self, name: str, options: BaseModel, request_id: str | None = None) -> str:
        """An open upload job on a collection whose model this service runs (else 409)."""
        info = self.backends.encodable_collection(name)
        store, job_id = self.jobs.store, new_job_id()
        reserve_open_job(store, self.backends.settings, job_id)  # 429 past MAX_OPEN_JOBS
        try:
            return store.create(
                UPLOAD_KIND,
                info.name,
                [],
                options=options.model_dump(),
                request_id=request_id,
                job_id=job_id,
                open_ended=True,
            )
        except Exception:  # Redis down mid-way: the slot is not held by a job that does not exist
            forget_open_job(store, job_id)
            raise

    def append(self, job_id: str, files: list[Upload]) -> Appended:
        """Stage the files, add them to the open job and queue their chunks. Files refused up front (type,
        empty, not an image) are items too, failed with their reason, and listed in the answer."""
        if not files:
            raise InvalidInput("no files: send multipart/form-data with one or more `files` parts")
        if len(files) > min(self.backends.settings.upload_max_files_per_request, MAX_APPEND):
            raise InvalidInput(
                f"at most {self.backends.settings.upload_max_files_per_request} files per request",
                {"files": len(files)},
            )
        opened = self.jobs.store
        opened.require_open(job_id)  # before staging anything; append checks again, atomically
        touch_open_job(self.jobs.store, job_id)  # a request is coming in: not idle while it is staged
        # One staging folder per request: names of different requests (a/1.jpg, b/1.jpg) cannot clash, and
        # the worker's clean-up of the job's folder removes them all.
        settings = self.backends.settings
        sub = uuid.uuid4().hex[:12]
        items: list[JobItem] = []
        try:
            items = stage_uploads(settings, job_id, sub, files)
            total = opened.append(job_id, [item.to_json() for item in items])
            touch_open_job(self.jobs.store, job_id)  # activity: the idle clock starts again
        except Exception:  # whatever failed, the request's staged files must not outlive it; re-raised
            remove_staging(settings, job_id, sub)
            raise
        first = total - len(items)
        for start, end in chunks(len(items), self.backends.settings.ingest_chunk_size, first):
            payload = ChunkPayload(job_id=job_id, start=start, end=end)
            self.jobs.queue.enqueue(TaskKind.INGEST_CHUNK, payload)
        refused = [Rejected(file=i.name, reason=i.reason) for i in items if isinstance(i, RejectedItem)]
        return Appended(job_id=job_id, accepted=len(items) - len(refused), rejected=refused, total=total)

    def close(self, job_id: str) -> JobReport:
        """No more files: the job completes once every file has an outcome. A job that ends with a step
        of its own (a re-embed) is not the client's to close (409)."""
        kind = self.jobs.store.get(job_id, with_errors=False).kind
        if JobKind(kind).has_final_step:
            raise Conflict(
                f"job {job_id} is a {kind} job: it ends by itself after its last step", {"reason": "not_open"}
            )
        self.jobs.store.close(job_id)
        forget_open_job(self.jobs.store, job_id)
        report = self.jobs.report(job_id)
        if report.processed >= report.total:  # ended now: no chunk will run to clean the staging area
            remove_staging(self.backends.settings, job_id)
        return report

    def known(self, name: str, sha256: list[str]) -> list[str]:
        """The hashes among `sha256` whose bytes this collection already holds (one Weaviate query)."""
        info = self.backends.collection(name)
        ids = {image_uuid(info.name, sha): sha for sha in sha256}
        found = self.backends.image_store(info).existing(list(ids))
        return [sha for uid, sha in ids.items() if uid in found]
