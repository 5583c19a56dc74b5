"""The pure parts behind issue 23's items 1-3, 5, 9, 10, 14 and 15: sizes as the decoder will produce
them, the folder file reader, zip64 offsets, ranged reads and the byte budget."""

from __future__ import annotations

import io
import itertools
import os
import struct
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from indexer.errors import InvalidInput, PayloadTooLarge
from indexer.media import codecs, raw
from indexer.media.decode import check_pixels, read_header
from indexer.pipeline.inflight import ByteBudget
from indexer.sources import ziparchive
from indexer.sources.folderfile import read_folder_file
from indexer.storage.objectstore import LocalObjectStore
from indexer.storage.ranged import open_ranged
from tests import formatgen
from tests.craft import tiff


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _jxl_parts(stream: bytes, cuts: list[int]) -> bytes:
    out = b"\x00\x00\x00\x0cJXL \r\n\x87\n" + _box(b"ftyp", b"jxl \x00\x00\x00\x00jxl ")
    bounds = [0, *cuts, len(stream)]
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        last = 0x80000000 if i == len(bounds) - 2 else 0
        out += _box(b"jxlp", struct.pack(">I", i | last) + stream[lo:hi])
    return out


@pytest.mark.parametrize("cuts", [[2], [1], [3, 5], [2, 3, 4, 6]])
def test_jxl_size_is_read_from_the_joined_jxlp_parts(cuts: list[int]) -> None:
    assert codecs.jxl_size(_jxl_parts(formatgen.jxl_bomb(9000, 7000), cuts)) == (9000, 7000)


def test_jxl_parts_out_of_order_are_corrupt() -> None:
    data = _jxl_parts(formatgen.jxl_bomb(), [2]).replace(
        struct.pack(">I", 0x80000001), struct.pack(">I", 0x80000005)
    )
    with pytest.raises(InvalidInput, match="out of order"):
        codecs.jxl_size(data)


def test_a_real_jxl_split_after_its_signature_keeps_its_size() -> None:
    stream = formatgen.jxl(formatgen.scene(64, 48))
    assert stream[:2] == b"\xff\x0a"
    assert read_header(_jxl_parts(stream, [2])).width == 64


def test_tiff_tile_is_checked_against_the_cap() -> None:
    entries = [(256, 4, 16), (257, 4, 16), (258, 3, 8), (259, 3, 1), (262, 3, 1), (277, 3, 1)]
    header = read_header(tiff([*entries, (322, 4, 8192), (323, 4, 8192)], bytes(256)))
    assert (header.width, header.height, header.buffer) == (16, 16, (8192, 8192))
    with pytest.raises(PayloadTooLarge, match="one tile of the image is 8192x8192"):
        check_pixels(header, 64_000_000)
    check_pixels(header, 8192 * 8192)
    assert read_header(tiff(entries, bytes(256))).buffer is None


@pytest.mark.parametrize(
    ("aspect", "expected"),
    [(1.0, (600, 400)), (10.0, (6000, 400)), (0.5, (600, 800)), (0.0, (600, 400)), (200.0, (0xFFFF, 400))],
)
def test_raw_output_size_follows_libraw_stretch(aspect: float, expected: tuple[int, int]) -> None:
    sizes = SimpleNamespace(width=600, height=400, pixel_aspect=aspect, raw_width=640, raw_height=420)
    assert raw.output_size(sizes) == expected


def test_raw_budget_is_the_larger_of_sensor_and_output() -> None:
    square = SimpleNamespace(width=600, height=400, pixel_aspect=1.0, raw_width=640, raw_height=420)
    assert raw.budget_size(square) == (640, 420)
    stretched = SimpleNamespace(width=600, height=400, pixel_aspect=10.0, raw_width=640, raw_height=420)
    assert raw.budget_size(stretched) == (6000, 400)


def test_dng_default_scale_is_in_its_header_size() -> None:
    dng = formatgen.dng(formatgen.scene(64, 48), default_scale=(10, 1))
    header = read_header(dng)
    assert (header.format, header.width, header.height) == ("dng", 640, 48)


@pytest.mark.parametrize("offset", [2**63, 2**64 - 1, 1000])
def test_zip64_directory_offset_past_the_file_is_invalid(offset: int) -> None:
    eocd64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, 46, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 1)
    classic = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    data = eocd64 + locator + classic
    with pytest.raises(InvalidInput, match=f"offset {offset} lies past the end of the file"):
        ziparchive.read_directory(io.BytesIO(data), len(data))


def test_folder_file_reader_follows_no_link_and_reads_only_regular_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "a.jpg").write_bytes(b"abc")
    os.symlink(root / "d" / "a.jpg", root / "link.jpg")
    os.symlink(root / "d", root / "dlink")
    os.mkfifo(root / "pipe")
    assert read_folder_file(root, root / "d" / "a.jpg", 3) == b"abc"
    with pytest.raises(PayloadTooLarge, match="over the limit of 2"):
        read_folder_file(root, root / "d" / "a.jpg", 2)
    for linked in ("link.jpg", "dlink/a.jpg"):
        with pytest.raises(InvalidInput, match="changed into a link"):
            read_folder_file(root, root / linked, 10)
    with pytest.raises(InvalidInput, match="named pipe"):
        read_folder_file(root, root / "pipe", 10)
    with pytest.raises(InvalidInput, match="outside its root"):
        read_folder_file(root, root / ".." / "root" / "d" / "a.jpg", 10)
    with pytest.raises(InvalidInput, match="disappeared"):
        read_folder_file(root, root / "gone.jpg", 10)


def test_ranged_reader_reads_zip_entries_like_a_file(tmp_path: Path) -> None:
    buf = io.BytesIO()
    entries = {f"{i}.bin": os.urandom(5000 + i) for i in range(5)}
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    store = LocalObjectStore(tmp_path)
    store.put_bytes("job/archive.zip", buf.getvalue())
    f, size = open_ranged(store, "job/archive.zip")
    directory = ziparchive.read_directory(f, size)
    for entry in ziparchive.iter_entries(f, directory):
        again = ziparchive.entry_at(f, directory, entry.record_offset)
        assert ziparchive.read_entry(f, again, 10**6) == entries[entry.name]


def test_byte_budget_waits_until_bytes_come_back() -> None:
    budget = ByteBudget(100)
    assert budget.take(60, 0.0)
    assert not budget.take(60, 0.01)  # does not fit while 60 are held
    threading.Timer(0.05, budget.give, args=(60,)).start()
    assert budget.take(60, 5.0)
    budget.give(60)
    assert budget.take(500, 0.0)  # larger than the whole budget: runs when nothing else is held
    assert not budget.take(1, 0.0)
    assert budget.peak == 500
