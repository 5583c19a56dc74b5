"""Exports of a collection's embeddings: id, metadata and vector per image.

- Parquet (pyarrow): one row per image; columns id, collection, filename, sha256, format, width,
  height, ingested_at, tags, labels, metadata (JSON text) and vector (fixed-size list of float32).
  Written in row groups as pages arrive, so memory stays at one page.
- NPY + JSON: a zip (stored, not compressed: float32 does not compress) holding ``items.json`` (model
  id, dim and one object per row) and ``vectors.npy`` (float32 [n, dim], row i = item i).

Both are generators of byte chunks (`stream_parquet`, `stream_npy_zip`), so the API streams an export
as Weaviate's pages arrive: memory holds one page, whatever the collection's size. The .npy header needs
the row count, so the vectors wait in a temporary file on disk (not in memory) until the last page.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from indexer.store.images import ImageRecord, ImageStore, in_collection, vector_of
from indexer.store.scan import scan

ExportFormat = Literal["parquet", "npy"]
META_FIELDS = ("id", "collection", "filename", "sha256", "format", "width", "height", "ingested_at")


def pages(store: ImageStore, collection: str) -> Iterator[tuple[list[ImageRecord], np.ndarray]]:
    where = in_collection(collection)
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


class _ChunkSink(io.RawIOBase):
    """A write-only, non-seekable file whose bytes are taken out in chunks (`drain`) as they come."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _parquet_schema(model_id: str, dim: int) -> Any:
    import pyarrow as pa

    return pa.schema(
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
        metadata={b"model_id": model_id.encode(), b"dim": str(dim).encode()},
    )


def stream_parquet(store: ImageStore, collection: str, dim: int) -> Iterator[bytes]:
    """The Parquet file in chunks: one row group per page of Weaviate objects."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(store.model_id, dim)
    sink = _ChunkSink()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
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
            if chunk := sink.drain():
                yield chunk
    if chunk := sink.drain():
        yield chunk


def stream_npy_zip(store: ImageStore, collection: str, dim: int, spool_dir: Path) -> Iterator[bytes]:
    """The zip in chunks: items.json streamed page by page while the vectors spool to a temporary file
    in `spool_dir`, then vectors.npy (its header needs the final row count) read back in 1 MiB pieces."""
    sink = _ChunkSink()
    spool_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=spool_dir, prefix="export-", suffix=".f32")
    raw = Path(tmp)
    try:
        count = 0
        with os.fdopen(fd, "w+b") as spool:
            with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                with archive.open("items.json", "w", force_zip64=True) as member:
                    head = json.dumps({"model_id": store.model_id, "dim": dim})[:-1]
                    member.write(f'{head}, "items": ['.encode())
                    for records, vectors in pages(store, collection):
                        spool.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
                        items = ",".join(json.dumps(_item(r)) for r in records)
                        member.write(((", " if count else "") + items).encode())
                        count += len(records)
                        if chunk := sink.drain():
                            yield chunk
                    member.write(f'], "count": {count}}}'.encode())
                yield sink.drain()
                spool.seek(0)
                with archive.open("vectors.npy", "w", force_zip64=True) as member:
                    header = {"descr": "<f4", "fortran_order": False, "shape": (count, dim)}
                    np.lib.format.write_array_header_1_0(member, header)
                    while piece := spool.read(1 << 20):
                        member.write(piece)
                        yield sink.drain()
            if chunk := sink.drain():
                yield chunk
    finally:
        with contextlib.suppress(OSError):
            raw.unlink()
