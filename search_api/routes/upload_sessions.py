"""Folder uploads from the web page (issue 16): the limits a client packs its requests by, an open job
that many upload requests append to, a close, a lookup of the hashes a collection already holds, and
the newest images of a collection. The use cases are in indexer/services/upload_sessions.py."""

from __future__ import annotations

from typing import Annotated

from flask import Blueprint, Response, request, url_for
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from indexer.errors import InvalidInput
from indexer.services.browse import BrowseOrder, ImagePages
from indexer.services.jobs import JobReport
from indexer.services.search import SearchFilters
from indexer.services.upload_sessions import Appended, UploadSessions
from search_api.logs import current_request_id
from search_api.routes.images import ImageView
from search_api.routes.uploads import IngestOptions
from search_api.services import Services, services
from search_api.upload_spool import upload_of
from search_api.validation import endpoint, json_body, parse, parse_query, respond

bp = Blueprint("upload_sessions", __name__)

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class UploadLimits(BaseModel):
    max_request_bytes: int = Field(description="MAX_UPLOAD_BYTES: the largest request body accepted")
    max_files_per_request: int = Field(description="UPLOAD_MAX_FILES_PER_REQUEST")
    parallel_requests: int = Field(description="UPLOAD_PARALLEL_REQUESTS: requests a client keeps in flight")
    max_hash_lookup: int = Field(description="UPLOAD_MAX_HASH_LOOKUP: sha256 values per /known request")
    chunk_size: int = Field(description="INGEST_CHUNK_SIZE: images per worker task")
    max_open_jobs: int = Field(description="MAX_OPEN_JOBS: open upload jobs at once (429 past it)")
    open_job_idle_s: float = Field(
        description="OPEN_JOB_IDLE_S: an open job that takes no file this long (nothing waiting) expires"
    )


class OpenedUpload(BaseModel):
    job_id: str
    status_url: str
    files_url: str = Field(
        description="POST the files here (multipart `files`), in as many requests as needed"
    )
    close_url: str = Field(description="POST here once every file is sent; the job completes after that")


class KnownRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: list[Sha256] = Field(
        max_length=10_000, description="lowercase hex; at most UPLOAD_MAX_HASH_LOOKUP"
    )


class KnownResponse(BaseModel):
    known: list[str] = Field(description="the requested hashes whose bytes the collection already holds")


class ImagePageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=48, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=9000)


class ImageFilterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: SearchFilters = Field(default_factory=SearchFilters)
    sort_by: BrowseOrder = Field(
        default="-taken_at",
        description="a field, '-' first for descending; images without it come last when descending, first "
        "when ascending",
    )
    limit: int = Field(default=48, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=9999)


class ImagePage(BaseModel):
    images: list[ImageView]
    total: int
    limit: int
    offset: int


def sessions(svc: Services) -> UploadSessions:
    return UploadSessions(svc, svc.job_service)


@bp.get("/uploads/limits")
@endpoint("Limits a client packs its upload requests by", response=UploadLimits, tags=["ingest"])
def limits() -> tuple[Response, int]:
    settings = services().settings
    return respond(
        UploadLimits(
            max_request_bytes=settings.max_upload_bytes,
            max_files_per_request=settings.upload_max_files_per_request,
            parallel_requests=settings.upload_parallel_requests,
            max_hash_lookup=settings.upload_max_hash_lookup,
            chunk_size=settings.ingest_chunk_size,
            max_open_jobs=settings.max_open_jobs,
            open_job_idle_s=settings.open_job_idle_s,
        )
    )


@bp.post("/collections/<name>/uploads")
@endpoint(
    "Open an upload job that later requests append files to (POST files_url), then close (POST close_url)",
    body=IngestOptions,
    response=OpenedUpload,
    status=201,
    tags=["ingest"],
)
def open_upload(name: str) -> tuple[Response, int]:
    svc = services()
    options = parse(IngestOptions, json_body()).checked(svc.settings)
    job_id = sessions(svc).open(name, options, current_request_id())
    return respond(
        OpenedUpload(
            job_id=job_id,
            status_url=url_for("jobs.get", job_id=job_id),
            files_url=url_for("upload_sessions.append_files", job_id=job_id),
            close_url=url_for("upload_sessions.close", job_id=job_id),
        ),
        201,
    )


@bp.post("/jobs/<job_id>/files")
@endpoint(
    "Append image files (multipart) to an open upload job; 409 once it is closed or has ended",
    response=Appended,
    status=202,
    multipart={"files": "one or more image files; each part's filename is stored (a relative path is kept)"},
    tags=["ingest"],
)
def append_files(job_id: str) -> tuple[Response, int]:
    files = request.files.getlist("files")
    uploads = [upload_of(f) for f in files]
    return respond(sessions(services()).append(job_id, uploads), 202)


@bp.post("/jobs/<job_id>/close")
@endpoint(
    "Close an open upload job: it takes no more files, and completes once every file has an outcome",
    response=JobReport,
    tags=["ingest"],
)
def close(job_id: str) -> tuple[Response, int]:
    return respond(sessions(services()).close(job_id))


@bp.post("/collections/<name>/known")
@endpoint(
    "Which of these sha256 values the collection already holds (a re-upload can skip those files)",
    body=KnownRequest,
    response=KnownResponse,
    tags=["ingest"],
)
def known(name: str) -> tuple[Response, int]:
    svc = services()
    req = parse(KnownRequest, json_body())
    if len(req.sha256) > svc.settings.upload_max_hash_lookup:
        raise InvalidInput(
            f"at most {svc.settings.upload_max_hash_lookup} sha256 values per request",
            {"sha256": len(req.sha256)},
        )
    return respond(KnownResponse(known=sessions(svc).known(name, req.sha256)))


@bp.get("/collections/<name>/images")
@endpoint(
    "A page of a collection's images, newest first", query=ImagePageQuery, response=ImagePage, tags=["images"]
)
def newest(name: str) -> tuple[Response, int]:
    query = parse_query(ImagePageQuery)
    images, total = ImagePages(services()).newest(name, query.limit, query.offset)
    return respond(
        ImagePage(
            images=[ImageView.of(i) for i in images], total=total, limit=query.limit, offset=query.offset
        )
    )


@bp.post("/collections/<name>/images/filter")
@endpoint(
    "A page of a collection's images that match filters (no query: a date range, a place, a camera), "
    "in a field's order, with how many match",
    body=ImageFilterRequest,
    response=ImagePage,
    tags=["images"],
)
def filtered(name: str) -> tuple[Response, int]:
    req = parse(ImageFilterRequest, json_body())
    images, total = ImagePages(services()).filtered(name, req.filters, req.sort_by, req.limit, req.offset)
    return respond(
        ImagePage(images=[ImageView.of(i) for i in images], total=total, limit=req.limit, offset=req.offset)
    )
