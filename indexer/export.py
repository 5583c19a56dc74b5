"""Exports of a collection's embeddings: id, metadata and vector per image.

- Parquet (pyarrow): one row per image; columns id, collection, filename, sha256, format, width,
  height, ingested_at, tags, labels, metadata (JSON text) and vector (fixed-size list of float32).
  Written in row groups as pages arrive, so memory stays at one page.
- NPY + JSON: a zip (stored, not compressed: float32 does not compress) holding ``vectors.npy``
  (float32 [n, dim], row i = item i) and ``items.json`` (model id, dim and one object per row).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from weaviate.classes.query import Filter

from indexer.store.images import ImageRecord, ImageStore
from indexer.store.scan import scan, vector_of

ExportFormat = Literal["parquet", "npy"]
META_FIELDS = ("id", "collection", "filename", "sha256", "format", "width", "height", "ingested_at")


def pages(store: ImageStore, collection: str) -> Iterator[tuple[list[ImageRecord], np.ndarray]]:
    where = Filter.by_property("collection").equal(collection)
    for page in scan(store.collection, where, "sha256", include_vector=True):
        records, vectors = [], []
        for obj in page:
            vector = vector_of(obj)
            if vector is None:
                continue
            records.append(ImageRecord.from_object(obj.uuid, dict(obj.properties)))
            vectors.append(vector)
        if records:
            yield records, np.asarray(vectors, dtype=np.float32)


def _item(record: ImageRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json", include={*META_FIELDS, "tags", "labels", "metadata"})
    return data


def write_parquet(path: Path, store: ImageStore, collection: str, dim: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("collection", pa.string()),
            ("filename", pa.string()),
            ("sha256", pa.string()),
            ("format", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("ingested_at", pa.timestamp("us", tz="UTC")),
            ("tags", pa.list_(pa.string())),
            ("labels", pa.list_(pa.string())),
            ("metadata", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ],
        metadata={b"model_id": store.model_id.encode(), b"dim": str(dim).encode()},
    )
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for records, vectors in pages(store, collection):
            columns: dict[str, Any] = {
                "id": [r.id for r in records],
                "collection": [r.collection for r in records],
                "filename": [r.filename for r in records],
                "sha256": [r.sha256 for r in records],
                "format": [r.format for r in records],
                "width": [r.width for r in records],
                "height": [r.height for r in records],
                "ingested_at": [r.ingested_at for r in records],
                "tags": [r.tags for r in records],
                "labels": [r.labels for r in records],
                "metadata": [json.dumps(r.metadata) for r in records],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
            }
            writer.write_table(pa.table(columns, schema=schema))
            rows += len(records)
    return rows


def write_npy_zip(path: Path, store: ImageStore, collection: str, dim: int) -> int:
    """Vectors go to a raw temp file first; the .npy header needs the final row count."""
    raw = path.with_suffix(".raw")
    items: list[dict[str, Any]] = []
    try:
        with raw.open("wb") as handle:
            for records, vectors in pages(store, collection):
                handle.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
                items.extend(_item(r) for r in records)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("vectors.npy", "w", force_zip64=True) as member:
                header = {"descr": "<f4", "fortran_order": False, "shape": (len(items), dim)}
                np.lib.format.write_array_header_1_0(member, header)
                with raw.open("rb") as source:
                    while chunk := source.read(1 << 20):
                        member.write(chunk)
            archive.writestr(
                "items.json",
                json.dumps({"model_id": store.model_id, "dim": dim, "count": len(items), "items": items}),
            )
    finally:
        raw.unlink(missing_ok=True)
    return len(items)
