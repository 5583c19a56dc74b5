"""Uploads: multipart files, zip archives, server-side folders and URLs. Each answers 202 with a job."""

from __future__ import annotations

import json
from typing import Any, Self

from flask import Blueprint, Response, request, url_for
from pydantic import BaseModel, ConfigDict, Field

from indexer.errors import InvalidInput
from indexer.services.ingest import JobStarted, Rejected, check_ingest_options
from indexer.settings import Settings
from search_api.json_limits import large_json
from search_api.logs import current_request_id
from search_api.services import services
from search_api.upload_spool import saver, upload_of
from search_api.validation import endpoint, json_body, parse, respond

bp = Blueprint("uploads", __name__)

MAX_URLS = 1000


class JobAccepted(BaseModel):
    job_id: str
    status_url: str
    accepted: int
    rejected: list[Rejected]


class IngestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(default_factory=list, description="at most MAX_TAGS tags")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="capped by MAX_METADATA_KEYS/_KEY_LENGTH/_VALUE_LENGTH/_BYTES"
    )

    def checked(self, settings: Settings) -> Self:
        """These options, once their tags and metadata are within the caps (else InvalidInput)."""
        check_ingest_options(self.tags, self.metadata, settings)
        return self


class FolderRequest(IngestOptions):
    path: str = Field(min_length=1)


class UrlsRequest(IngestOptions):
    urls: list[str] = Field(min_length=1, max_length=MAX_URLS)


def _form_options() -> IngestOptions:
    tags = [t.strip() for raw in request.form.getlist("tags") for t in raw.split(",") if t.strip()]
    raw_meta = request.form.get("metadata")
    metadata: Any = {}
    if raw_meta:
        try:
            metadata = json.loads(raw_meta)
        except ValueError as exc:
            raise InvalidInput(f"form field `metadata` is not valid JSON: {exc}") from exc
    return parse(IngestOptions, {"tags": tags, "metadata": metadata}).checked(services().settings)


def accepted(started: JobStarted) -> tuple[Response, int]:
    """202 with the job's id, its status URL and the inputs accepted or refused up front."""
    body = JobAccepted(
        job_id=started.job_id,
        status_url=url_for("jobs.get", job_id=started.job_id),
        accepted=started.accepted,
        rejected=started.rejected,
    )
    return respond(body, 202)


@bp.post("/collections/<name>/images")
@endpoint(
    "Upload image files (multipart) for indexing",
    response=JobAccepted,
    status=202,
    multipart={"files": "one or more image files", "tags": "comma-separated tags", "metadata": "JSON object"},
    tags=["ingest"],
)
def upload_files(name: str) -> tuple[Response, int]:
    svc = services()
    info = svc.ingest.encodable_collection(name)  # another model's collection: refused before parsing
    files = request.files.getlist("files") + request.files.getlist("file")
    uploads = [upload_of(f) for f in files]
    if not uploads:
        raise InvalidInput("no files: send multipart/form-data with one or more `files` parts")
    return accepted(svc.ingest.upload(info, uploads, _form_options(), current_request_id()))


@bp.post("/collections/<name>/zip")
@endpoint(
    "Upload a zip archive of images for indexing",
    response=JobAccepted,
    status=202,
    multipart={"file": "a zip archive", "tags": "comma-separated tags", "metadata": "JSON object"},
    tags=["ingest"],
)
def upload_zip(name: str) -> tuple[Response, int]:
    svc = services()
    info = svc.ingest.encodable_collection(name)
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("no archive: send multipart/form-data with a `file` part")
    options = _form_options()
    return accepted(svc.ingest.zip(info, upload.filename or "", saver(upload), options, current_request_id()))


@bp.post("/collections/<name>/folder")
@endpoint(
    "Index a folder on the server (under an allowed root)",
    body=FolderRequest,
    response=JobAccepted,
    status=202,
    tags=["ingest"],
)
def index_folder(name: str) -> tuple[Response, int]:
    svc = services()
    req = parse(FolderRequest, json_body()).checked(svc.settings)
    return accepted(svc.ingest.folder(name, req.path, req, current_request_id()))


@bp.post("/collections/<name>/urls")
@endpoint(
    "Index images from http(s) URLs", body=UrlsRequest, response=JobAccepted, status=202, tags=["ingest"]
)
@large_json
def index_urls(name: str) -> tuple[Response, int]:
    svc = services()
    req = parse(UrlsRequest, json_body()).checked(svc.settings)
    return accepted(svc.ingest.urls(name, req.urls, req, current_request_id()))
