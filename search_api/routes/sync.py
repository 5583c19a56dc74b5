"""Folder sync: keep a collection in step with a server-side folder. Answers 202 with a job."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field

from search_api.logs import current_request_id
from search_api.routes.uploads import JobAccepted, accepted
from search_api.services import services
from search_api.validation import endpoint, json_body, parse

bp = Blueprint("sync", __name__)


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="an absolute folder path under one of FOLDER_ROOTS")
    dry_run: bool = Field(default=False, description="report what would change, change nothing")


@bp.post("/collections/<name>/sync")
@endpoint(
    "Sync a collection with a folder on the server: add new files, replace changed ones, move renamed "
    "ones (without re-embedding), remove deleted ones; the job reports the counts",
    body=SyncRequest,
    response=JobAccepted,
    status=202,
    tags=["ingest"],
)
def sync_folder(name: str) -> tuple[Response, int]:
    req = parse(SyncRequest, json_body())
    return accepted(services().sync.start(name, req.path, req.dry_run, current_request_id()))
