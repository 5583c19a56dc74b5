"""The export writers (indexer/export.py) on synthetic pages: the Parquet file and the NPY + JSON zip read
back with pyarrow, numpy and zipfile, streamed page by page. Weaviate's paging (`export.pages`) is the
one part replaced: the writers' contract starts at the pages it yields."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from indexer.store import export
from indexer.store.images import ImageRecord

DIM = 4
Page = tuple[list[ImageRecord], np.ndarray]


class _Store:
    """What the writers read of an ImageStore besides its pages: the model id."""

    model_id = "tiny-test-clip"


def record(n: int) -> ImageRecord:
    return ImageRecord(
        id=f"00000000-0000-0000-0000-{n:012d}",
        collection="trip",
        filename=f"day{n % 2}/{n}.jpg",
        sha256=f"{n:064x}",
        format="jpeg",
        width=640 + n,
        height=480,
        ingested_at=datetime(2026, 12, 5, 10, 0, tzinfo=UTC) + timedelta(seconds=n),
        tags=["folder"] if n % 2 else [],
        labels=[f"label{n}"],
        metadata={"n": n, "camera": {"make": "x"}} if n % 2 else {},
    )


def synthetic_pages(sizes: list[int]) -> list[Page]:
    rng = np.random.default_rng(7)
    out, n = [], 0
    for size in sizes:
        records = [record(n + i) for i in range(size)]
        out.append((records, rng.standard_normal((size, DIM)).astype(np.float32)))
        n += size
    return out


class Paged:
    """Stands in for `export.pages`: yields the given pages and counts how many were asked for."""

    def __init__(self, pages: list[Page]) -> None:
        self.pages = pages
        self.served = 0
        self.collections: list[str] = []

    def __call__(self, store: object, collection: str) -> Iterator[Page]:
        self.collections.append(collection)
        for page in self.pages:
            self.served += 1
            yield page


@pytest.fixture
def paged(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Paged:
    source = Paged(synthetic_pages(getattr(request, "param", [3, 2])))
    monkeypatch.setattr(export, "pages", source)
    return source


def all_vectors(source: Paged) -> np.ndarray:
    return np.concatenate([v for _, v in source.pages]) if source.pages else np.zeros((0, DIM), np.float32)


def all_records(source: Paged) -> list[ImageRecord]:
    return [r for records, _ in source.pages for r in records]


# --------------------------------------------------------------------------------------------- Parquet
def test_parquet_has_one_row_per_image_with_its_vector_and_metadata(paged: Paged) -> None:
    data = b"".join(export.stream_parquet(_Store(), "trip", DIM))  # type: ignore[arg-type]
    assert paged.collections == ["trip"]
    parquet = pq.ParquetFile(io.BytesIO(data))
    assert parquet.metadata.num_row_groups == 2  # one per page
    assert parquet.schema_arrow.metadata == {b"model_id": b"tiny-test-clip", b"dim": b"4"}
    table = parquet.read()
    assert table.column_names == [
        "id", "collection", "filename", "sha256", "format", "width", "height", "ingested_at", "tags",
        "labels", "metadata", "vector",
    ]  # fmt: skip
    rows = table.to_pylist()
    records = all_records(paged)
    assert [r["id"] for r in rows] == [r.id for r in records]
    for row, rec in zip(rows, records, strict=True):
        assert (row["filename"], row["sha256"], row["width"], row["height"]) == (
            rec.filename, rec.sha256, rec.width, rec.height,
        )  # fmt: skip
        assert row["ingested_at"] == rec.ingested_at and row["ingested_at"].tzinfo is not None
        assert (row["tags"], row["labels"]) == (rec.tags, rec.labels)
        assert json.loads(row["metadata"]) == rec.metadata
    vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(vectors, all_vectors(paged))


def test_parquet_streams_a_page_before_the_next_is_read(paged: Paged) -> None:
    chunks = export.stream_parquet(_Store(), "trip", DIM)  # type: ignore[arg-type]
    first = next(chunks)
    assert first.startswith(b"PAR1") and paged.served == 1  # the first page's bytes left with it
    rest = list(chunks)
    assert paged.served == 2 and (first + b"".join(rest)).endswith(b"PAR1")


@pytest.mark.parametrize("paged", [[]], indirect=True)
def test_an_empty_collection_is_an_empty_parquet_file_with_the_schema(paged: Paged) -> None:
    data = b"".join(export.stream_parquet(_Store(), "trip", DIM))  # type: ignore[arg-type]
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 0 and "vector" in table.column_names


# ------------------------------------------------------------------------------------------ NPY + JSON
def read_npy_zip(data: bytes) -> tuple[dict[str, object], np.ndarray, list[zipfile.ZipInfo]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        items = json.loads(archive.read("items.json"))
        vectors = np.load(io.BytesIO(archive.read("vectors.npy")), allow_pickle=False)
    return items, vectors, infos


def test_npy_zip_holds_items_and_vectors_row_for_row(paged: Paged, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    data = b"".join(export.stream_npy_zip(_Store(), "trip", DIM, spool))  # type: ignore[arg-type]
    items, vectors, infos = read_npy_zip(data)
    assert [i.filename for i in infos] == ["items.json", "vectors.npy"]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)  # float32 does not compress
    records = all_records(paged)
    assert (items["model_id"], items["dim"], items["count"]) == ("tiny-test-clip", DIM, len(records))
    listed = items["items"]
    assert isinstance(listed, list)
    assert listed == [json.loads(json.dumps(export._item(r))) for r in records]
    assert listed[1]["metadata"] == {"n": 1, "camera": {"make": "x"}} and listed[1]["tags"] == ["folder"]
    assert vectors.dtype == np.dtype("<f4") and vectors.shape == (len(records), DIM)
    np.testing.assert_array_equal(vectors, all_vectors(paged))
    assert list(spool.iterdir()) == []  # the vectors' spool file is gone


def test_npy_zip_streams_items_page_by_page(paged: Paged, tmp_path: Path) -> None:
    chunks = export.stream_npy_zip(_Store(), "trip", DIM, tmp_path)  # type: ignore[arg-type]
    first = next(chunks)
    assert first.startswith(b"PK\x03\x04") and paged.served == 1
    assert b'"model_id": "tiny-test-clip"' in first and b"day0/0.jpg" in first
    list(chunks)
    assert paged.served == 2


@pytest.mark.parametrize("paged", [[]], indirect=True)
def test_an_empty_collection_is_a_zip_of_no_items_and_no_rows(paged: Paged, tmp_path: Path) -> None:
    items, vectors, _ = read_npy_zip(b"".join(export.stream_npy_zip(_Store(), "trip", DIM, tmp_path)))  # type: ignore[arg-type]
    assert (items["count"], items["items"]) == (0, []) and vectors.shape == (0, DIM)


def test_an_export_stopped_midway_leaves_no_spool_file(paged: Paged, tmp_path: Path) -> None:
    """A client that hangs up: the response's generator is closed after its first chunk."""
    chunks = export.stream_npy_zip(_Store(), "trip", DIM, tmp_path)  # type: ignore[arg-type]
    next(chunks)
    assert len(list(tmp_path.iterdir())) == 1  # the vectors wait on disk, not in memory
    chunks.close()
    assert list(tmp_path.iterdir()) == []
