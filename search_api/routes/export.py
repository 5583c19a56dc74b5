"""Exports of a collection's embeddings: Parquet, or NPY plus JSON in a zip."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from flask import Blueprint, Response, send_file
from pydantic import BaseModel, ConfigDict

from indexer.errors import InvalidInput
from indexer.export import write_npy_zip, write_parquet
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
    svc = services()
    query = parse_query(ExportQuery)
    info = svc.collection(name)
    store = svc.image_store(info)
    if info.model_id != svc.encoder.model_id:
        raise InvalidInput(
            f"collection {name!r} uses model {info.model_id}; this service runs {svc.encoder.model_id}"
        )
    dim = svc.encoder.dim
    staging = svc.settings.staging_dir
    staging.mkdir(parents=True, exist_ok=True)
    suffix = ".parquet" if query.format == "parquet" else ".zip"
    fd, tmp = tempfile.mkstemp(dir=staging, prefix="export-", suffix=suffix)
    path = Path(tmp)
    try:
        with open(fd, "wb"):
            pass
        if query.format == "parquet":
            write_parquet(path, store, name, dim)
        else:
            write_npy_zip(path, store, name, dim)
        handle = path.open("rb")  # closed by the response once sent
    finally:
        path.unlink(missing_ok=True)  # the open handle keeps the data until the response is sent
    return send_file(
        handle, mimetype="application/octet-stream", as_attachment=True, download_name=f"{name}{suffix}"
    )
