"""Uploads: multipart files, zip archives, server-side folders and URLs. Each answers 202 with a job."""

from __future__ import annotations

import json
import shutil
from typing import Any, Self

from flask import Blueprint, Response, request, url_for
from pydantic import BaseModel, ConfigDict, Field

from indexer.errors import InvalidInput, UnsupportedMediaType
from indexer.images import check_content_type
from indexer.jobs import chunks, new_job_id
from indexer.limits import check_ingest_options
from indexer.settings import Settings
from indexer.sources import Item, plan_folder, plan_urls, plan_zip, rejected, stage_upload
from indexer.user_collections import CollectionInfo
from search_api.logs import current_request_id
from search_api.services import Services, services
from search_api.validation import endpoint, json_body, parse, respond

bp = Blueprint("uploads", __name__)

MAX_URLS = 1000


class Rejected(BaseModel):
    file: str
    reason: str


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


def start_job(
    svc: Services, info: CollectionInfo, kind: str, items: list[Item], options: BaseModel, job_id: str
) -> tuple[Response, int]:
    """Record the job, queue one task per chunk and answer 202; refuse outright when nothing is usable."""
    refused = [
        Rejected(file=item["name"], reason=item["reason"]) for item in items if item["kind"] == "rejected"
    ]
    if not items or len(refused) == len(items):
        shutil.rmtree(svc.settings.staging_dir / job_id, ignore_errors=True)
        message = "nothing to index" if not items else "no usable image in the request"
        raise InvalidInput(message, {"rejected": [r.model_dump() for r in refused]})
    try:
        svc.jobs.create(
            kind,
            info.name,
            items,
            options=options.model_dump(),
            request_id=current_request_id(),
            job_id=job_id,
        )
    except Exception:  # Redis down (a 503): nothing will read the staged files
        shutil.rmtree(svc.settings.staging_dir / job_id, ignore_errors=True)
        raise
    for start, end in chunks(len(items), svc.settings.ingest_chunk_size):
        svc.celery.send_task("clipsearch.ingest_chunk", args=[job_id, start, end])
    body = JobAccepted(
        job_id=job_id,
        status_url=url_for("jobs.get", job_id=job_id),
        accepted=len(items) - len(refused),
        rejected=refused,
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
    info = svc.encodable_collection(name)
    files = request.files.getlist("files") + request.files.getlist("file")
    if not files:
        raise InvalidInput("no files: send multipart/form-data with one or more `files` parts")
    options = _form_options()
    job_id = new_job_id()
    staging = svc.settings.staging_dir / job_id
    items: list[Item] = []
    for index, upload in enumerate(files):
        name_ = upload.filename or f"upload-{index}"
        try:
            check_content_type(upload.mimetype or None)
        except UnsupportedMediaType as exc:
            items.append(rejected(name_, exc.message))
            continue
        items.append(stage_upload(staging, index, name_, upload.stream))
    return start_job(svc, info, "upload", items, options, job_id)


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
    info = svc.encodable_collection(name)
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("no archive: send multipart/form-data with a `file` part")
    options = _form_options()
    job_id = new_job_id()
    staging = svc.settings.staging_dir / job_id
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / "archive.zip"
    upload.save(path)
    try:
        items = plan_zip(path, upload.filename or "archive.zip", svc.settings)
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return start_job(svc, info, "zip", items, options, job_id)


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
    info = svc.encodable_collection(name)
    items = plan_folder(req.path, svc.settings)
    return start_job(svc, info, "folder", items, req, new_job_id())


@bp.post("/collections/<name>/urls")
@endpoint(
    "Index images from http(s) URLs", body=UrlsRequest, response=JobAccepted, status=202, tags=["ingest"]
)
def index_urls(name: str) -> tuple[Response, int]:
    svc = services()
    req = parse(UrlsRequest, json_body()).checked(svc.settings)
    info = svc.encodable_collection(name)
    return start_job(svc, info, "urls", plan_urls(req.urls, svc.settings), req, new_job_id())
