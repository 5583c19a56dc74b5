"""POST /folders/identity: what the service sees at a path under FOLDER_ROOTS. `clipsearch index` asks it
for the folder and one file, compares the answer with its own stat, and registers the folder (POST
/collections/<c>/folder) instead of uploading it when they match."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field

from indexer.services.folders import PathIdentity, identify
from search_api.services import services
from search_api.validation import endpoint, json_body, parse, respond

bp = Blueprint("folders", __name__)


class IdentityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096, description="an absolute path under FOLDER_ROOTS")


@bp.post("/folders/identity")
@endpoint(
    "What the service sees at a path under FOLDER_ROOTS (real path, inode, size, times); 403 outside them",
    body=IdentityRequest,
    response=PathIdentity,
    tags=["ingest"],
)
def identity() -> tuple[Response, int]:
    svc = services()
    req = parse(IdentityRequest, json_body())
    return respond(identify(req.path, svc.settings), 200)
