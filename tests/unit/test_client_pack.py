"""The CLI's upload batches: full worker chunks, never over the request size limit."""

from __future__ import annotations

from pathlib import Path

from clipsearch.client import MULTIPART_MARGIN, PART_OVERHEAD, pack


def _files(tmp_path: Path, sizes: list[int]) -> list[Path]:
    paths = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"{i:03d}.jpg"
        path.write_bytes(b"x" * size)
        paths.append(path)
    return paths


def test_batches_hold_a_chunk_of_files(tmp_path: Path) -> None:
    paths = _files(tmp_path, [10] * 300)
    batches = list(pack(paths, 128, 10**9))
    assert [len(b) for b in batches] == [128, 128, 44]
    assert [p for b in batches for p in b] == paths


def test_batches_stay_under_the_byte_limit(tmp_path: Path) -> None:
    part = 1000
    limit = MULTIPART_MARGIN + 3 * (part + PART_OVERHEAD)  # room for exactly three parts
    paths = _files(tmp_path, [part] * 7)
    assert [len(b) for b in pack(paths, 128, limit)] == [3, 3, 1]


def test_a_file_over_the_limit_goes_alone(tmp_path: Path) -> None:
    paths = _files(tmp_path, [10, MULTIPART_MARGIN * 3, 10])
    assert [len(b) for b in pack(paths, 128, MULTIPART_MARGIN * 2)] == [1, 1, 1]
