"""Exports of a collection's embeddings: Parquet, or NPY plus JSON in a zip."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict
from werkzeug.http import dump_options_header

from search_api.services import services
from search_api.validation import endpoint, parse_query

bp = Blueprint("export", __name__)


class ExportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["parquet", "npy"] = "parquet"


@bp.get("/collections/<name>/export")
@endpoint(
    "Export a collection's embeddings with id and metadata: Parquet (one row per image, a float32 "
    "`vector` column), or `npy`: a zip of vectors.npy and items.json (row i = item i); the file name "
    "(<collection>.parquet or .zip) tells which",
    query=ExportQuery,
    binary_response="application/octet-stream",
    tags=["export"],
)
def export(name: str) -> Response:
    query = parse_query(ExportQuery)
    # Streamed as Weaviate's pages arrive (indexer/services/export.py): memory holds one page,
    # not the collection.
    chunks, suffix = services().export.stream(name, query.format)
    return Response(
        chunks,
        mimetype="application/octet-stream",
        headers={"Content-Disposition": dump_options_header("attachment", {"filename": name + suffix})},
    )
