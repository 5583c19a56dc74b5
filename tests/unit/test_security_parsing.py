"""Input parsing bounds: the zip EOCD/central-directory reader, the TIFF header reader, job items, ids."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from indexer.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge
from indexer.jobs.store import check_job_id, new_job_id
from indexer.media.decode import check_pixels, read_header
from indexer.settings import Settings
from indexer.sources import ziparchive as za
from indexer.sources.items import RejectedItem, ZipItem, check_item
from indexer.sources.plan import plan_zip
from indexer.storage.blobs import BlobStore
from tests.craft import forged_eocd, gray_tiff, patch_entry, tiff, zip_bytes

PAYLOAD = os.urandom(2000) + b"a" * 6000


def _open(data: bytes) -> tuple[io.BytesIO, za.Directory]:
    f = io.BytesIO(data)
    return f, za.read_directory(f, len(data))


# ------------------------------------------------------------------------------------- EOCD reader
def test_eocd_reader_reads_count_and_size_before_the_directory() -> None:
    data = zip_bytes({"d/": b"", "a.jpg": PAYLOAD, "b.jpg": b"xy"})
    _, directory = _open(data)
    assert directory.entries == 3  # the directory entry counts
    assert not directory.zip64
    assert directory.offset + directory.size == directory.end == len(data) - 22


@pytest.mark.parametrize("zip64", [False, True])
def test_forged_eocd_is_capped_before_any_record_is_parsed(zip64: bool) -> None:
    count = 2_000_000 if zip64 else 65_535  # a classic EOCD holds at most 65535
    many = forged_eocd(entries=count, cd_size=count * 46, zip64=zip64)
    f, directory = _open(many)
    assert (directory.entries, directory.size, directory.zip64) == (count, count * 46, zip64)
    with pytest.raises(PayloadTooLarge, match=f"declares {count} entries, over the limit of 10000"):
        za.check_directory(directory, "x.zip", max_entries=10_000, max_directory_bytes=4 << 20)
    big = forged_eocd(entries=10, cd_size=64 << 20, zip64=zip64)
    _, directory = _open(big)
    with pytest.raises(PayloadTooLarge, match="central directory of 67108864 bytes"):
        za.check_directory(directory, "x.zip", max_entries=10_000, max_directory_bytes=4 << 20)
    # Under the caps, a directory that is not in the file is a bad archive, not a crash.
    small = forged_eocd(entries=2, cd_size=92, zip64=zip64)
    f, directory = _open(small)
    za.check_directory(directory, "x.zip", max_entries=10, max_directory_bytes=1000)
    with pytest.raises(InvalidInput, match="outside the file"):
        za.iter_entries(f, directory)


def test_eocd_reader_refuses_what_is_not_a_zip() -> None:
    for junk in (b"", b"PK\x03\x04garbage", os.urandom(5000)):
        f = io.BytesIO(junk)
        with pytest.raises(InvalidInput, match="not a valid zip archive"):
            za.read_directory(f, len(junk))
    multi = struct.pack("<4s4H2LH", b"PK\x05\x06", 1, 0, 1, 2, 46, 0, 0)
    with pytest.raises(InvalidInput, match="span several disks"):
        za.read_directory(io.BytesIO(multi), len(multi))
    lying = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 100, 100, 46, 0, 0)
    f, directory = _open(lying)
    with pytest.raises(InvalidInput, match="cannot fit"):
        za.check_directory(directory, "x.zip", max_entries=1000, max_directory_bytes=1000)


def test_real_zip64_and_prepended_data() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive, archive.open("big.jpg", "w", force_zip64=True) as w:
        w.write(PAYLOAD)
    f, directory = _open(b"#!/bin/sh\n" * 10 + out.getvalue())
    (entry,) = za.iter_entries(f, directory)
    assert directory.shift == 100
    assert za.read_entry(f, entry, 1 << 20) == PAYLOAD


# ---------------------------------------------------------------------------- per-entry problems
def test_bad_entries_are_their_own_problem() -> None:
    data = zip_bytes({"a.jpg": PAYLOAD, "b.jpg": PAYLOAD[::-1], "c.jpg": b"c" * 100, "d.jpg": b"d" * 50})
    data = patch_entry(data, 0, flags=0x800, name_byte=0xFF)
    data = patch_entry(data, 1, version=99)
    data = patch_entry(data, 2, method=99)
    f, directory = _open(data)
    entries = za.iter_entries(f, directory)
    assert [e.problem for e in entries] == [
        "entry name is not valid UTF-8 although the archive flags it as UTF-8",
        "entry needs zip version 9.9 to extract; 6.3 is supported",
        "unsupported compression method 99 (stored, deflate, bzip2 and lzma are)",
        None,
    ]
    assert za.read_entry(f, entries[3], 1 << 20) == b"d" * 50
    for bad in entries[:3]:
        with pytest.raises(InvalidInput):
            za.read_entry(f, bad, 1 << 20)


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_every_method_round_trips_and_is_bounded(method: int) -> None:
    data = zip_bytes({"a.jpg": PAYLOAD, "b.jpg": b"hello"}, method)
    f, directory = _open(data)
    a, b = za.iter_entries(f, directory)
    assert za.read_entry(f, za.entry_at(f, directory, a.record_offset), 1 << 20) == PAYLOAD
    assert za.read_entry(f, b, 1 << 20) == b"hello"
    with pytest.raises(PayloadTooLarge, match="over the limit of 100"):
        za.read_entry(f, a, 100)
    # A directory that understates the size: reading stops one byte past it.
    small = za.Entry(**{**a.__dict__, "file_size": 10, "compress_size": a.compress_size})
    if method != zipfile.ZIP_STORED:
        with pytest.raises(PayloadTooLarge, match="larger than its declared size"):
            za.read_entry(f, small, 1 << 20)


def test_corrupt_stream_and_crc_fail_only_that_entry() -> None:
    data = bytearray(zip_bytes({"a.jpg": PAYLOAD, "b.jpg": PAYLOAD[::-1]}))
    data[30 + 5 + 10 : 30 + 5 + 40] = b"\xff" * 30  # inside a.jpg's deflate stream
    f, directory = _open(bytes(data))
    a, b = za.iter_entries(f, directory)
    with pytest.raises(InvalidInput, match="corrupt archive entry"):
        za.read_entry(f, a, 1 << 20)
    assert za.read_entry(f, b, 1 << 20) == PAYLOAD[::-1]

    stored = bytearray(zip_bytes({"a.jpg": PAYLOAD, "b.jpg": b"ok"}, zipfile.ZIP_STORED))
    stored[30 + 5 + 100] ^= 0xFF
    f, directory = _open(bytes(stored))
    a, b = za.iter_entries(f, directory)
    with pytest.raises(InvalidInput, match="CRC"):
        za.read_entry(f, a, 1 << 20)
    assert za.read_entry(f, b, 1 << 20) == b"ok"

    truncated = zip_bytes({"a.jpg": PAYLOAD})
    f, directory = _open(truncated)
    (a,) = za.iter_entries(f, directory)
    short = za.Entry(**{**a.__dict__, "compress_size": a.compress_size // 2})
    with pytest.raises(InvalidInput):
        za.read_entry(f, short, 1 << 20)


def test_plan_zip_counts_directories_and_caps_total(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(zip_bytes({"d1/": b"", "d2/": b"", "a.jpg": PAYLOAD}))
    with pytest.raises(PayloadTooLarge, match="declares 3 entries, over the limit of 2"):
        plan_zip(path, "a.zip", Settings(zip_max_entries=2))
    with pytest.raises(PayloadTooLarge, match="would expand to 8000 bytes, over the limit of 7999"):
        plan_zip(path, "a.zip", Settings(zip_max_total_bytes=7999))
    (item,) = plan_zip(path, "a.zip", Settings())
    assert isinstance(item, ZipItem) and item.entry == "a.jpg"
    (refused,) = plan_zip(path, "a.zip", Settings(zip_max_entry_bytes=100))
    assert isinstance(refused, RejectedItem) and "over the limit of 100" in refused.reason


# ------------------------------------------------------------------------------------ TIFF headers
@pytest.mark.parametrize(
    "kwargs", [{}, {"dup_width": 10, "dup_first": True}, {"dup_width": 10, "dup_first": False}]
)
def test_tiff_header_agrees_with_the_decoder(kwargs: dict[str, object]) -> None:
    data = gray_tiff(20, 12, **kwargs)  # type: ignore[arg-type]
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    header = read_header(data)
    assert decoded is not None
    assert (header.height, header.width) == decoded.shape[:2]


def test_duplicate_width_cannot_hide_a_huge_tiff() -> None:
    # libtiff uses the first ImageWidth; the last one (what the old check read) says 10.
    entries = [(256, 4, 30000), (256, 4, 10), (257, 4, 30000), (258, 3, 8), (277, 3, 1)]
    header = read_header(tiff(entries, b"\0" * 100))
    assert (header.width, header.height) == (30000, 30000)
    with pytest.raises(PayloadTooLarge, match="30000x30000 = 900000000 pixels"):
        check_pixels(header, 64_000_000)
    for endian in ("<", ">"):
        big = read_header(tiff(entries, b"\0" * 100, big=True, endian=endian))
        assert (big.width, big.height) == (30000, 30000)


def test_tiff_header_refuses_what_libtiff_would_not_read() -> None:
    cases = {
        "tag 256 of type 2": [(256, 2, 5), (257, 4, 5)],  # ASCII width
        "no image dimensions": [(257, 4, 5)],
    }
    for reason, entries in cases.items():
        with pytest.raises(InvalidInput, match=reason):
            read_header(tiff(entries, b"\0"))
    outside = b"II*\x00" + struct.pack("<I", 10_000) + b"\0" * 10
    with pytest.raises(InvalidInput, match="outside the file"):
        read_header(outside)
    huge_ifd = b"II*\x00" + struct.pack("<IH", 8, 5000) + b"\0" * 100
    with pytest.raises(InvalidInput, match="IFD with 5000 entries"):
        read_header(huge_ifd)
    short_ifd = b"II*\x00" + struct.pack("<IH", 8, 50) + b"\0" * 100
    with pytest.raises(InvalidInput, match="short IFD"):
        read_header(short_ifd)


# --------------------------------------------------------------------------------- job items, ids
def test_job_items_are_checked_before_they_run(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"x")
    settings = Settings(data_dir=tmp_path / "data", folder_roots=[root])
    job = new_job_id()
    staged = settings.staging_dir / job
    staged.mkdir(parents=True)
    (staged / "f.jpg").write_bytes(b"x")
    good = [
        {"kind": "stored", "sha256": "a" * 64, "name": "s"},
        {"kind": "file", "path": str(staged / "f.jpg"), "name": "f"},
        {"kind": "folder", "path": str(root / "a.jpg"), "root": str(root.resolve()), "name": "a"},
        {"kind": "url", "url": "http://127.0.0.1:1/x.jpg", "name": "u"},
    ]
    for item in good:
        assert check_item(item, settings, job).to_json() == item
    bad: list[tuple[object, type[Exception], str]] = [
        ({"kind": "stored", "sha256": "../../../etc/passwd", "name": "s"}, InvalidInput, "64 lowercase hex"),
        ({"kind": "stored", "sha256": "A" * 64, "name": "s"}, InvalidInput, "64 lowercase hex"),
        ({"kind": "file", "path": "/etc/passwd", "name": "f"}, Forbidden, "outside"),
        ({"kind": "file", "path": str(staged / ".." / "x"), "name": "f"}, InvalidInput, "disappeared"),
        ({"kind": "folder", "path": "/etc/passwd", "root": "/", "name": "f"}, Forbidden, "FOLDER_ROOTS"),
        (
            {"kind": "folder", "path": "/etc/passwd", "root": str(root.resolve()), "name": "f"},
            Forbidden,
            "outside",
        ),
        ({"kind": "zip", "path": str(staged / "f.jpg"), "entry": "a", "name": "z"}, InvalidInput, "record"),
        ({"kind": "exec", "name": "x"}, InvalidInput, "unknown kind"),
        (["not", "a", "dict"], InvalidInput, "not an object"),
        ({"kind": "file", "path": "rel/x", "name": "f"}, InvalidInput, "absolute"),
        ({"kind": "file", "path": "/tmp/\x00x", "name": "f"}, InvalidInput, "NUL"),
    ]
    for forged, error, fragment in bad:
        with pytest.raises(error, match=fragment):
            check_item(forged, settings, job)
    # Another job's staged file is outside this job's staging directory.
    with pytest.raises(Forbidden):
        check_item({"kind": "file", "path": str(staged / "f.jpg"), "name": "f"}, settings, new_job_id())


def test_blob_paths_take_only_hashes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.original_path("0" * 64).name == "0" * 64
    for bad in ("../../etc/passwd", "0" * 63, "0" * 64 + "/", "G" * 64):
        with pytest.raises(InvalidInput):
            store.original_path(bad)
        with pytest.raises(InvalidInput):
            store.thumbnail_path(bad)


def test_job_ids_cannot_name_other_keys() -> None:
    job = new_job_id()
    assert check_job_id(job) == job
    for bad in (f"{job}:items", f"{job}:outcome", "*", "", job.upper(), job + "\n", "a" * 1000):
        with pytest.raises(NotFound, match="unknown job"):
            check_job_id(bad)


def test_every_path_parameter_has_an_id_check(tmp_path: Path) -> None:
    from search_api.app import create_app
    from search_api.path_ids import unchecked_params

    app = create_app(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0"))
    assert unchecked_params(app) == []
