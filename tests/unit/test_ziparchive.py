"""The bounded zip reader (indexer/ziparchive.py) on archives built here byte by byte: a good archive,
zip-slip names, zip64 records and extra fields, truncation, huge declared sizes and encrypted entries.

(tests/unit/test_security_parsing.py covers the forged EOCD caps, unsupported versions and methods, and
each compression method's bounds.)"""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.errors import InvalidInput, PayloadTooLarge
from indexer.settings import Settings
from indexer.sources import ziparchive as za
from indexer.sources.items import RejectedItem, ZipItem
from indexer.sources.plan import plan_zip

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8  # what the reader returns is bytes, whatever they are
FULL = 0xFFFFFFFF  # a 32-bit size or offset that says "see the zip64 extra field"


@dataclass
class Member:
    """One entry as this test writes it: stored or raw deflate, with the fields a test may forge."""

    name: bytes
    data: bytes
    deflate: bool = False
    flags: int = 0x800  # names are UTF-8
    zip64_extra: bool = False  # 0xFFFFFFFF sizes and offset in the central record, real ones in extra 1
    extra: bytes | None = None  # the central record's extra field, as is
    declared_size: int | None = None  # the uncompressed size the central record claims
    external_attr: int = 0o100644 << 16


def build(
    members: list[Member], *, zip64_eocd: bool = False, prefix: bytes = b"", comment: bytes = b""
) -> bytes:
    """A zip archive of `members`: local headers and data, the central directory, then the EOCD record
    (preceded by a zip64 EOCD record and its locator with `zip64_eocd`); `prefix` is prepended after the
    offsets are computed (a self-extractor's stub)."""
    body, central = bytearray(), bytearray()
    for m in members:
        payload = m.data
        if m.deflate:
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            payload = packer.compress(m.data) + packer.flush()
        method = za.DEFLATED if m.deflate else za.STORED
        crc, offset = zlib.crc32(m.data), len(body)
        body += struct.pack(
            "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, m.flags, method, 0, 0, crc, len(payload), len(m.data),
            len(m.name), 0,
        )  # fmt: skip
        body += m.name + payload
        size = len(m.data) if m.declared_size is None else m.declared_size
        sizes = (len(payload), size, offset)
        extra = m.extra if m.extra is not None else b""
        if m.zip64_extra:
            extra = struct.pack("<HH3Q", 1, 24, size, len(payload), offset)
            sizes = (FULL, FULL, FULL)
        central += struct.pack(
            "<4s4B4HL2L5H2L", b"PK\x01\x02", 45, 3, 45, 0, m.flags, method, 0, 0, crc, sizes[0], sizes[1],
            len(m.name), len(extra), 0, 0, 0, m.external_attr, sizes[2],
        )  # fmt: skip
        central += m.name + extra
    count, cd_offset, cd_size = len(members), len(body), len(central)
    end = bytearray(body + central)
    if zip64_eocd:
        eocd64_at = len(end)
        end += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd64_at, 1)
        end += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, FULL, FULL, len(comment))
    else:
        end += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, len(comment))
    return prefix + bytes(end) + comment


def open_archive(data: bytes) -> tuple[io.BytesIO, za.Directory, list[za.Entry]]:
    f = io.BytesIO(data)
    directory = za.read_directory(f, len(data), "t.zip")
    za.check_directory(directory, "t.zip", max_entries=1000, max_directory_bytes=1 << 20)
    return f, directory, za.iter_entries(f, directory, "t.zip")


def plan(tmp_path: Path, data: bytes, settings: Settings | None = None) -> dict[str, str | None]:
    """plan_zip's verdict per entry name: None when it becomes an item, else the reason it is refused."""
    path = tmp_path / "t.zip"
    path.write_bytes(data)
    verdicts: dict[str, str | None] = {}
    for item in plan_zip(path, "t.zip", settings or Settings()):
        assert isinstance(item, ZipItem | RejectedItem)
        name = item.name.removeprefix("t.zip:")
        verdicts[name] = item.reason if isinstance(item, RejectedItem) else None
    return verdicts


# ------------------------------------------------------------------------------------ a good archive
def test_a_good_archive_lists_every_entry_and_reads_each_back() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("trip/", b"")
        archive.writestr("trip/a.jpg", JPEG, zipfile.ZIP_DEFLATED)
        archive.writestr("trip/b.jpg", JPEG[::-1], zipfile.ZIP_STORED)
        archive.writestr("été.jpg", b"accent", zipfile.ZIP_BZIP2)
        archive.comment = b"a comment after the EOCD record " * 20
    f, directory, entries = open_archive(out.getvalue())
    assert (directory.entries, directory.zip64, directory.shift) == (4, False, 0)
    assert [(e.name, e.is_dir, e.problem) for e in entries] == [
        ("trip/", True, None),
        ("trip/a.jpg", False, None),
        ("trip/b.jpg", False, None),
        ("été.jpg", False, None),
    ]
    assert [e.method for e in entries[1:]] == [za.DEFLATED, za.STORED, za.BZIP2]
    assert entries[1].compress_size < entries[1].file_size == len(JPEG)
    assert [za.read_entry(f, e, 1 << 20) for e in entries[1:]] == [JPEG, JPEG[::-1], b"accent"]
    # A planned item names its entry by the offset of its directory record; that alone finds it again.
    again = za.entry_at(f, directory, entries[2].record_offset, "t.zip")
    assert (again.name, again.index) == ("trip/b.jpg", -1)
    assert za.read_entry(f, again, 1 << 20) == JPEG[::-1]


def test_names_without_the_utf8_flag_are_cp437() -> None:
    data = build([Member("Ç.jpg".encode("cp437"), JPEG, flags=0), Member(b"ok.jpg", b"x")])
    _, _, (legacy, plain) = open_archive(data)
    assert (legacy.name, legacy.problem, plain.name) == ("Ç.jpg", None, "ok.jpg")


def test_an_entry_record_outside_the_directory_is_refused() -> None:
    f, directory, _ = open_archive(build([Member(b"a.jpg", JPEG)]))
    with pytest.raises(InvalidInput, match="outside the central directory"):
        za.entry_at(f, directory, directory.offset + directory.size, "t.zip")
    with pytest.raises(InvalidInput, match="outside the central directory"):
        za.entry_at(f, directory, 0, "t.zip")


# ------------------------------------------------------------------------------------------ zip-slip
SLIPS = ["../evil.jpg", "/etc/cron.d/x.jpg", "trip/../../evil.jpg", "C:\\evil.jpg", "trip\\..\\..\\evil.jpg"]


def test_zip_slip_names_come_out_verbatim_and_the_planner_refuses_them(tmp_path: Path) -> None:
    members = [Member(name.encode(), JPEG) for name in SLIPS]
    members.append(Member(b"trip/..hidden/fine.jpg", JPEG))  # '..' inside a name is not a parent step
    members.append(Member(b"link.jpg", b"/etc/passwd", external_attr=(stat.S_IFLNK | 0o777) << 16))
    data = build(members)
    _, _, entries = open_archive(data)
    # The reader reports names as the archive spells them, with no problem of its own: the path rules
    # belong to the planner, which sees exactly what an extractor would.
    assert [e.name for e in entries] == [*SLIPS, "trip/..hidden/fine.jpg", "link.jpg"]
    assert all(e.problem is None for e in entries)
    verdicts = plan(tmp_path, data)
    for name in SLIPS:
        assert verdicts[name] == "unsafe path in archive (absolute or '..': zip-slip)", name
    assert verdicts["trip/..hidden/fine.jpg"] is None
    assert verdicts["link.jpg"] == "symbolic link in archive"


# --------------------------------------------------------------------------------------------- zip64
def test_a_zip64_end_record_is_followed_to_the_directory() -> None:
    data = build([Member(b"a.jpg", JPEG), Member(b"b.jpg", JPEG[::-1], deflate=True)], zip64_eocd=True)
    f, directory, entries = open_archive(data)
    assert directory.zip64 and directory.entries == 2 and directory.shift == 0
    assert [za.read_entry(f, e, 1 << 20) for e in entries] == [JPEG, JPEG[::-1]]


def test_a_zip64_archive_behind_a_stub_is_found_by_its_locator() -> None:
    """The locator's offset is wrong by the stub's length: the record just before the locator is used,
    and every offset is shifted by the stub."""
    stub = b'#!/bin/sh\nexec unzip "$0"\n' * 4
    data = build([Member(b"a.jpg", JPEG, zip64_extra=True)], zip64_eocd=True, prefix=stub)
    f, directory, (entry,) = open_archive(data)
    assert directory.zip64 and directory.shift == len(stub)
    assert entry.header_offset == len(stub) and entry.file_size == len(JPEG)
    assert za.read_entry(f, entry, 1 << 20) == JPEG


def test_zip64_extra_fields_carry_the_real_sizes_and_offset() -> None:
    data = build([Member(b"a.jpg", JPEG), Member(b"b.jpg", JPEG[::-1], deflate=True, zip64_extra=True)])
    f, _, (a, b) = open_archive(data)
    assert (b.file_size, b.problem) == (len(JPEG), None)
    assert b.header_offset > a.header_offset and b.compress_size < b.file_size
    assert za.read_entry(f, b, 1 << 20) == JPEG[::-1]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (struct.pack("<HHQ", 1, 8, 100), "corrupt zip64 extra field"),  # three values needed, one given
        (struct.pack("<HH", 1, 24) + b"\0" * 8, "corrupt extra field"),  # runs past the record's end
    ],
)
def test_a_broken_zip64_extra_field_is_that_entry_s_problem(extra: bytes, problem: str) -> None:
    buf = bytearray(build([Member(b"a.jpg", JPEG, extra=extra), Member(b"b.jpg", b"ok")]))
    first = bytes(buf).find(b"PK\x01\x02")
    struct.pack_into("<2L", buf, first + 20, FULL, FULL)  # the markers that send the reader to the extra
    struct.pack_into("<L", buf, first + 42, FULL)
    f, _, (entry, other) = open_archive(bytes(buf))
    assert entry.problem == problem
    with pytest.raises(InvalidInput, match=problem):
        za.read_entry(f, entry, 1 << 20)
    assert other.problem is None and za.read_entry(f, other, 100) == b"ok"


# ----------------------------------------------------------------------------------------- truncation
def test_every_truncation_is_a_bad_archive_or_a_bad_entry_never_a_crash() -> None:
    """The module's contract: InvalidInput or PayloadTooLarge, whatever the bytes. Every prefix of a
    small archive (and the archive with its middle cut out) is read as far as it goes."""
    whole = build(
        [Member(b"a.jpg", JPEG, deflate=True), Member(b"b.jpg", JPEG), Member(b"c/", b"")], comment=b"c" * 40
    )
    cuts = [whole[:n] for n in range(len(whole))]
    cuts += [whole[:n] + whole[n + 300 :] for n in range(0, len(whole) - 300, 97)]
    outcomes: set[str] = set()
    for data in cuts:
        try:
            f, _, entries = open_archive(data)
            for entry in entries:
                if not entry.is_dir:
                    za.read_entry(f, entry, 1 << 20)
            outcomes.add("read")
        except (InvalidInput, PayloadTooLarge) as exc:
            outcomes.add(type(exc).__name__)
    assert "InvalidInput" in outcomes  # (a cut inside the comment still reads: the EOCD says how long)


def test_entry_data_past_the_directory_start_is_refused_from_the_directory_alone() -> None:
    data = build([Member(b"a.jpg", JPEG), Member(b"b.jpg", b"tail")])
    buf = bytearray(data)
    first = data.find(b"PK\x01\x02")
    struct.pack_into("<L", buf, first + 20, len(data))  # a.jpg's compressed size runs past everything
    f, _, (a, b) = open_archive(bytes(buf))
    assert a.problem == "entry data lies outside the archive"
    assert b.problem is None and za.read_entry(f, b, 100) == b"tail"


def test_a_directory_with_fewer_records_than_declared_is_refused() -> None:
    names = [f"{'a' * 40}.jpg".encode(), f"{'b' * 40}.jpg".encode()]  # records of 90 bytes: 3 could fit
    data = bytearray(build([Member(names[0], JPEG), Member(names[1], JPEG)]))
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<2H", data, eocd + 8, 1, 1)  # says one entry; holds two records
    _, _, entries = open_archive(bytes(data))
    assert [e.name.encode() for e in entries] == names[:1]  # the declared count bounds the parse
    struct.pack_into("<2H", data, eocd + 8, 3, 3)
    with pytest.raises(InvalidInput, match="the directory holds 2 entries, not 3"):
        open_archive(bytes(data))


# ------------------------------------------------------------------------------------- huge entries
def test_a_huge_declared_size_is_refused_before_a_byte_is_read(tmp_path: Path) -> None:
    data = build([Member(b"big.jpg", JPEG, declared_size=FULL - 1), Member(b"ok.jpg", JPEG)])
    f, _, (big, ok) = open_archive(data)
    with pytest.raises(PayloadTooLarge, match=f"expands to {FULL - 1} bytes, over the limit of 1048576"):
        za.read_entry(f, big, 1 << 20)
    assert za.read_entry(f, ok, 1 << 20) == JPEG
    # The planner refuses the whole archive: the declared total is over its cap.
    with pytest.raises(PayloadTooLarge, match="would expand to"):
        plan(tmp_path, data)


def test_a_deflate_bomb_is_cut_at_its_declared_size_and_at_the_cap(tmp_path: Path) -> None:
    zeros = b"\0" * (8 << 20)
    honest = build([Member(b"bomb.jpg", zeros, deflate=True)])
    f, _, (bomb,) = open_archive(honest)
    assert bomb.file_size == len(zeros) and bomb.compress_size < 20_000
    with pytest.raises(PayloadTooLarge, match="over the limit of 1048576"):
        za.read_entry(f, bomb, 1 << 20)
    with pytest.raises(PayloadTooLarge, match="zip bomb"):  # its ratio refuses the archive at planning
        plan(tmp_path, honest)
    # A directory that understates the size: inflation stops one byte past the declared size.
    lying = build([Member(b"bomb.jpg", zeros, deflate=True, declared_size=1000)])
    f, _, (bomb,) = open_archive(lying)
    with pytest.raises(PayloadTooLarge, match="larger than its declared size"):
        za.read_entry(f, bomb, 1 << 30)


def test_the_entry_count_cap_applies_to_a_real_archive() -> None:
    data = build([Member(f"{i}.jpg".encode(), b"x") for i in range(11)])
    f = io.BytesIO(data)
    directory = za.read_directory(f, len(data), "t.zip")
    with pytest.raises(PayloadTooLarge, match="declares 11 entries, over the limit of 10") as caught:
        za.check_directory(directory, "t.zip", max_entries=10, max_directory_bytes=1 << 20)
    assert caught.value.details == {"reason": "zip_too_many_entries", "entries": 11, "limit": 10}
    za.check_directory(directory, "t.zip", max_entries=11, max_directory_bytes=directory.size)


# ------------------------------------------------------------------------------------------ encrypted
@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (0x800 | 0x1, "encrypted archive entry"),  # traditional PKWARE encryption
        (0x800 | 0x1 | 0x40, "encrypted archive entry"),  # strong encryption
        (0x800 | 0x20, "compressed patched data is not supported"),
    ],
)
def test_encrypted_and_patched_entries_fail_alone(tmp_path: Path, flags: int, problem: str) -> None:
    data = build([Member(b"secret.jpg", JPEG, flags=flags), Member(b"open.jpg", JPEG)])
    f, _, (secret, plain) = open_archive(data)
    assert (secret.problem, plain.problem) == (problem, None)
    with pytest.raises(InvalidInput, match=problem):
        za.read_entry(f, secret, 1 << 20)
    assert za.read_entry(f, plain, 1 << 20) == JPEG
    assert plan(tmp_path, data) == {"secret.jpg": problem, "open.jpg": None}
