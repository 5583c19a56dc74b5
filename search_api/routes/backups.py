"""Backups, for operators: create, list, read, restore (indexer/services/backup.py).

Behind the API key like the rest of the API. With no API_KEYS configured, these routes answer only
requests from a loopback address (403 otherwise): a backup reads every image and writes where the
settings allow, which an open service must not offer to its network.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field

from indexer.errors import Forbidden
from indexer.services.backup import Manifest, RestoreStatus
from search_api.guard import is_loopback_literal
from search_api.services import services
from search_api.validation import endpoint, json_body, parse, parse_query, respond

bp = Blueprint("backups", __name__, url_prefix="/admin/backups")

TARGET = "a directory or s3://bucket/prefix: BACKUP_URL (the default) or one in or below BACKUP_TARGETS"


@bp.before_request
def _operators_only() -> None:
    if services().settings.api_keys:
        return  # the key check (search_api/auth.py) already ran
    if not is_loopback_literal(request.remote_addr or ""):
        raise Forbidden("backups answer only loopback clients while API_KEYS is unset")


class CreateBackup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(default=None, max_length=1024, description=TARGET)


class RestoreBackup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(default=None, alias="from", max_length=1024, description=TARGET)


class SourceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(default=None, alias="from", max_length=1024, description=TARGET)


class BackupList(BaseModel):
    backups: list[Manifest]


def _json_or_empty() -> Any:
    """The JSON body; an empty body means every default."""
    return json_body() if request.get_data(cache=True) else {}


@bp.post("")
@endpoint(
    "Start a backup of every collection, class set, classifier, blob and ended job record; its manifest",
    body=CreateBackup,
    response=Manifest,
    status=202,
    tags=["backups"],
)
def create() -> tuple[Response, int]:
    req = parse(CreateBackup, _json_or_empty())
    return respond(services().backup.start(req.to), 202)


@bp.get("")
@endpoint("The backups in a target, newest first", query=SourceQuery, response=BackupList, tags=["backups"])
def list_all() -> tuple[Response, int]:
    query = parse_query(SourceQuery)
    return respond(BackupList(backups=services().backup.list(query.source)))


@bp.get("/<backup_id>")
@endpoint(
    "A backup's manifest: state, what it covers, versions",
    query=SourceQuery,
    response=Manifest,
    tags=["backups"],
)
def get(backup_id: str) -> tuple[Response, int]:
    query = parse_query(SourceQuery)
    return respond(services().backup.get(backup_id, query.source))


@bp.post("/<backup_id>/restore")
@endpoint(
    "Restore a backup into this stack, which must be empty (409 otherwise); the restore's status",
    body=RestoreBackup,
    response=RestoreStatus,
    status=202,
    tags=["backups"],
)
def restore(backup_id: str) -> tuple[Response, int]:
    req = parse(RestoreBackup, _json_or_empty())
    return respond(services().backup.start_restore(backup_id, req.source), 202)


@bp.get("/<backup_id>/restore")
@endpoint("The last restore of a backup on this stack", response=RestoreStatus, tags=["backups"])
def restore_status(backup_id: str) -> tuple[Response, int]:
    return respond(services().backup.restore_status(backup_id))
