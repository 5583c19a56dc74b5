"""A bounded zip reader: the end-of-central-directory record first, then the central directory, then one
entry at a time.

`zipfile.ZipFile` parses the whole central directory before a caller can look at it, builds one object
per entry (so a few hundred MB of tiny entries costs GBs), and raises for the whole archive on one bad
entry (a name that is not UTF-8 although flagged so, an unsupported version). Here the entry count and
the directory's size are read from the EOCD record (zip64 included) before anything else, so the caps
apply before the directory is parsed; every entry's problem is its own (`Entry.problem`), and reading
an entry is bounded by its declared size and checked against its CRC.

Archive-level damage (no EOCD, a directory outside the file) is `InvalidInput`; nothing here raises
anything else.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from indexer.errors import InvalidInput, PayloadTooLarge

_EOCD: Final = struct.Struct("<4s4H2LH")  # 22 bytes
_EOCD_SIG: Final = b"PK\x05\x06"
_LOCATOR: Final = struct.Struct("<4sLQL")  # zip64 EOCD locator, 20 bytes
_LOCATOR_SIG: Final = b"PK\x06\x07"
_EOCD64: Final = struct.Struct("<4sQ2H2L4Q")  # zip64 EOCD record, 56 bytes
_EOCD64_SIG: Final = b"PK\x06\x06"
_CENTRAL: Final = struct.Struct("<4s4B4HL2L5H2L")  # 46 bytes
_CENTRAL_SIG: Final = b"PK\x01\x02"
_LOCAL: Final = struct.Struct("<4s2B4HL2L2H")  # 30 bytes
_LOCAL_SIG: Final = b"PK\x03\x04"
_MAX_COMMENT: Final = 0xFFFF

STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
METHODS: Final = {STORED: "stored", DEFLATED: "deflate", BZIP2: "bzip2", LZMA: "lzma"}
MAX_EXTRACT_VERSION: Final = 63  # 6.3, the newest the spec (and zipfile) knows
_FLAG_ENCRYPTED: Final = 0x1
_FLAG_PATCHED: Final = 0x20
_FLAG_STRONG_ENCRYPTION: Final = 0x40
_FLAG_UTF8: Final = 0x800
_READ_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True)
class Directory:
    """What the end-of-central-directory record declares."""

    entries: int
    size: int  # bytes of the central directory
    offset: int  # where it starts in the file (prepended data already accounted for)
    zip64: bool
    end: int  # where the EOCD record (or the zip64 one) starts: the directory must end before it
    shift: int = 0  # bytes prepended to the archive (self-extractors): added to every header offset


@dataclass(frozen=True)
class Entry:
    index: int
    record_offset: int  # of its central-directory record in the file
    name: str  # decoded; with U+FFFD where the bytes were not valid UTF-8
    flags: int
    method: int
    extract_version: int
    crc: int
    compress_size: int
    file_size: int
    header_offset: int  # of its local header in the file
    external_attr: int
    problem: str | None = None  # why this entry cannot be read, found from the directory alone

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


def _invalid(display: str, why: str) -> InvalidInput:
    return InvalidInput(f"{display} is not a valid zip archive: {why}", {"reason": "bad_zip"})


def read_directory(f: BinaryIO, file_size: int, display: str = "archive") -> Directory:
    """The EOCD record (zip64 EOCD when present), found in the last 64 KiB, checked against the file."""
    tail_len = min(file_size, _EOCD.size + _MAX_COMMENT)
    f.seek(file_size - tail_len)
    tail = f.read(tail_len)
    pos = tail.rfind(_EOCD_SIG)
    while pos >= 0 and pos + _EOCD.size > len(tail):
        pos = tail.rfind(_EOCD_SIG, 0, pos)
    if pos < 0:
        raise _invalid(display, "no end-of-central-directory record")
    eocd_at = file_size - tail_len + pos
    _, disk, cd_disk, disk_entries, entries, size, offset, _ = _EOCD.unpack_from(tail, pos)
    zip64 = False
    record_end = eocd_at  # where the central directory (or the zip64 EOCD record) is followed
    if eocd_at >= _LOCATOR.size:
        f.seek(eocd_at - _LOCATOR.size)
        locator = f.read(_LOCATOR.size)
        if locator[:4] == _LOCATOR_SIG:
            _, _, eocd64_at, _ = _LOCATOR.unpack(locator)
            record_end = eocd_at - _LOCATOR.size
            eocd64_at = _find_eocd64(f, eocd64_at, record_end, display)
            f.seek(eocd64_at)
            raw = f.read(_EOCD64.size)
            _, _, _, _, disk, cd_disk, disk_entries, entries, size, offset = _EOCD64.unpack(raw)
            record_end, zip64 = eocd64_at, True
    if disk != 0 or cd_disk != 0 or disk_entries != entries:
        raise _invalid(display, "archives that span several disks are not supported")
    # An offset past the end of the file (a zip64 offset may claim up to 2^64 - 1) is damage, refused
    # before anything seeks to it.
    if offset > record_end:
        raise _invalid(
            display,
            f"the central directory's offset {offset} lies past the end of the file ({file_size} bytes)",
        )
    # Bytes prepended to the archive (a self-extractor) shift every offset. A directory that claims
    # more bytes than precede the EOCD is caught by `iter_entries`, after the caps (`check_directory`).
    shift = max(record_end - size - offset, 0)
    return Directory(
        entries=entries, size=size, offset=offset + shift, zip64=zip64, end=record_end, shift=shift
    )


def _find_eocd64(f: BinaryIO, declared: int, before: int, display: str) -> int:
    """The zip64 EOCD record: at its declared offset, or just before the locator (prepended data)."""
    for at in (declared, before - _EOCD64.size):
        if 0 <= at <= before - _EOCD64.size:
            f.seek(at)
            if f.read(4) == _EOCD64_SIG:
                return at
    raise _invalid(display, "zip64 end-of-central-directory record not found")


def check_directory(
    directory: Directory, display: str, *, max_entries: int, max_directory_bytes: int
) -> None:
    """The caps that apply before one directory record is parsed."""
    if directory.entries > max_entries:
        raise PayloadTooLarge(
            f"{display} declares {directory.entries} entries, over the limit of {max_entries} "
            "(directories count as entries)",
            {"reason": "zip_too_many_entries", "entries": directory.entries, "limit": max_entries},
        )
    if directory.size > max_directory_bytes:
        raise PayloadTooLarge(
            f"{display} has a central directory of {directory.size} bytes, over the limit of "
            f"{max_directory_bytes}",
            {"reason": "zip_directory_too_large", "bytes": directory.size, "limit": max_directory_bytes},
        )
    if directory.size < directory.entries * _CENTRAL.size:
        raise _invalid(
            display,
            f"{directory.entries} entries cannot fit in a central directory of {directory.size} bytes",
        )


def _decode_name(raw: bytes, flags: int) -> tuple[str, str | None]:
    if flags & _FLAG_UTF8:
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError:
            return (
                raw.decode("utf-8", "replace"),
                "entry name is not valid UTF-8 although the archive flags it as UTF-8",
            )
    return raw.decode("cp437"), None


def _zip64_extra(
    extra: bytes, file_size: int, compress_size: int, header_offset: int
) -> tuple[int, int, int, str | None]:
    """Replace the 0xFFFFFFFF sizes and offset from the zip64 extra field (id 1)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if len(body) < length:
            return file_size, compress_size, header_offset, "corrupt extra field"
        if tag == 1:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            try:
                if file_size == 0xFFFFFFFF:
                    file_size = values.pop(0)
                if compress_size == 0xFFFFFFFF:
                    compress_size = values.pop(0)
                if header_offset == 0xFFFFFFFF:
                    header_offset = values.pop(0)
            except IndexError:
                return file_size, compress_size, header_offset, "corrupt zip64 extra field"
        pos += 4 + length
    return file_size, compress_size, header_offset, None


def _entry_problem(entry: Entry, directory: Directory) -> str | None:
    if entry.extract_version > MAX_EXTRACT_VERSION:
        version = f"{entry.extract_version // 10}.{entry.extract_version % 10}"
        return f"entry needs zip version {version} to extract; {MAX_EXTRACT_VERSION / 10:.1f} is supported"
    if entry.flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
        return "encrypted archive entry"
    if entry.flags & _FLAG_PATCHED:
        return "compressed patched data is not supported"
    if entry.method not in METHODS and not entry.is_dir:
        return f"unsupported compression method {entry.method} (stored, deflate, bzip2 and lzma are)"
    if entry.header_offset + _LOCAL.size + entry.compress_size > directory.offset:
        return "entry data lies outside the archive"
    return None


def iter_entries(f: BinaryIO, directory: Directory, display: str = "archive") -> list[Entry]:
    """Every central-directory record, each with its own problem (or None). Call `check_directory` first:
    this reads the whole directory (`directory.size` bytes) in one go."""
    if directory.offset + directory.size > directory.end:
        raise _invalid(display, "the central directory lies outside the file")
    f.seek(directory.offset)
    data = f.read(directory.size)
    if len(data) != directory.size:
        raise _invalid(display, "the central directory lies outside the file")
    entries: list[Entry] = []
    pos = 0
    while pos < len(data) and len(entries) < directory.entries:
        entry, pos = _parse_record(data, pos, len(entries), directory, display)
        entries.append(entry)
    if len(entries) != directory.entries:
        raise _invalid(display, f"the directory holds {len(entries)} entries, not {directory.entries}")
    return entries


def _parse_record(data: bytes, pos: int, index: int, directory: Directory, display: str) -> tuple[Entry, int]:
    if pos + _CENTRAL.size > len(data) or data[pos : pos + 4] != _CENTRAL_SIG:
        raise _invalid(display, f"bad central directory record at entry {index}")
    (
        _,
        _create_version,
        _create_system,
        extract_version,
        _reserved,
        flags,
        method,
        _time,
        _date,
        crc,
        compress_size,
        file_size,
        name_len,
        extra_len,
        comment_len,
        _disk,
        _internal,
        external_attr,
        header_offset,
    ) = _CENTRAL.unpack_from(data, pos)
    start = pos + _CENTRAL.size
    end = start + name_len + extra_len + comment_len
    if end > len(data):
        raise _invalid(display, f"truncated central directory record at entry {index}")
    name, problem = _decode_name(data[start : start + name_len], flags)
    extra = data[start + name_len : start + name_len + extra_len]
    file_size, compress_size, header_offset, extra_problem = _zip64_extra(
        extra, file_size, compress_size, header_offset
    )
    entry = Entry(
        index=index,
        record_offset=directory.offset + pos,
        name=name,
        flags=flags,
        method=method,
        extract_version=extract_version,
        crc=crc,
        compress_size=compress_size,
        file_size=file_size,
        header_offset=header_offset + directory.shift,
        external_attr=external_attr,
    )
    problem = problem or extra_problem or _entry_problem(entry, directory)
    if problem:
        entry = Entry(**{**entry.__dict__, "problem": problem})
    return entry, end


def entry_at(f: BinaryIO, directory: Directory, record_offset: int, display: str = "archive") -> Entry:
    """The one entry whose central-directory record starts at `record_offset` (as planned earlier)."""
    if not directory.offset <= record_offset < directory.offset + directory.size:
        raise InvalidInput("archive entry offset is outside the central directory")
    f.seek(record_offset)
    available = directory.offset + directory.size - record_offset
    data = f.read(min(_CENTRAL.size, available))  # the fixed part, then just its name, extra and comment
    if len(data) == _CENTRAL.size:
        name_len, extra_len, comment_len = struct.unpack_from("<3H", data, 28)
        data += f.read(min(name_len + extra_len + comment_len, available - _CENTRAL.size))
    entry, _ = _parse_record(data, 0, -1, directory, display)
    return Entry(**{**entry.__dict__, "record_offset": record_offset})


def _lzma_decompressor(f: BinaryIO) -> lzma.LZMADecompressor:
    """Zip's LZMA: a 4-byte header (version, properties size), the LZMA1 properties, a raw stream."""
    head = f.read(4)
    if len(head) < 4:
        raise InvalidInput("truncated lzma header")
    (props_size,) = struct.unpack("<H", head[2:4])
    props = f.read(props_size)
    if props_size != 5 or len(props) != 5:
        raise InvalidInput("bad lzma properties")
    lc_lp_pb = props[0]
    if lc_lp_pb >= 9 * 5 * 5:
        raise InvalidInput("bad lzma properties")
    (dict_size,) = struct.unpack("<I", props[1:5])
    filt = {
        "id": lzma.FILTER_LZMA1,
        "lc": lc_lp_pb % 9,
        "lp": (lc_lp_pb // 9) % 5,
        "pb": lc_lp_pb // 45,
        "dict_size": dict_size,
    }
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])


def read_entry(f: BinaryIO, entry: Entry, max_bytes: int) -> bytes:
    """The entry's bytes, decompressed at most to its declared size (and `max_bytes`), CRC-checked.
    Every failure is InvalidInput (or PayloadTooLarge) with the reason, for this entry alone."""
    if entry.problem:
        raise InvalidInput(entry.problem)
    if entry.file_size > max_bytes:
        raise PayloadTooLarge(
            f"archive entry expands to {entry.file_size} bytes, over the limit of {max_bytes}"
        )
    try:
        return _read_entry(f, entry)
    except (zlib.error, lzma.LZMAError, EOFError, OSError, ValueError, struct.error) as exc:
        raise InvalidInput(f"corrupt archive entry ({entry.name}): {exc.__class__.__name__}: {exc}") from exc


def _read_entry(f: BinaryIO, entry: Entry) -> bytes:
    f.seek(entry.header_offset)
    head = f.read(_LOCAL.size)
    if len(head) != _LOCAL.size or head[:4] != _LOCAL_SIG:
        raise InvalidInput("bad local header for archive entry")
    name_len, extra_len = _LOCAL.unpack(head)[-2:]
    f.seek(entry.header_offset + _LOCAL.size + name_len + extra_len)
    remaining = entry.compress_size
    limit = entry.file_size
    out = bytearray()
    if entry.method == STORED:
        if entry.compress_size != entry.file_size:
            raise InvalidInput("stored archive entry whose sizes differ")
        out += f.read(limit)
    elif entry.method == DEFLATED:
        out = _inflate(f, remaining, limit)
    else:
        if entry.method == BZIP2:
            decomp: bz2.BZ2Decompressor | lzma.LZMADecompressor = bz2.BZ2Decompressor()
        else:
            before = f.tell()
            decomp = _lzma_decompressor(f)
            remaining -= f.tell() - before
        out = _decompress(f, decomp, remaining, limit)
    if len(out) > limit:
        raise PayloadTooLarge("archive entry is larger than its declared size")
    if len(out) < limit:
        raise InvalidInput(f"archive entry is truncated: {len(out)} of {limit} bytes")
    if zlib.crc32(out) != entry.crc:
        raise InvalidInput("archive entry fails its CRC check (corrupt data)")
    return bytes(out)


def _chunks(f: BinaryIO, remaining: int) -> Iterator[bytes]:
    while remaining > 0:
        chunk = f.read(min(_READ_CHUNK, remaining))
        if not chunk:
            raise EOFError("compressed data ends early")
        remaining -= len(chunk)
        yield chunk


def _inflate(f: BinaryIO, remaining: int, limit: int) -> bytearray:
    """Raw deflate, never producing more than limit + 1 bytes (one more tells "too large")."""
    decomp = zlib.decompressobj(-15)
    out = bytearray()
    for chunk in _chunks(f, remaining):
        pending = chunk
        while pending and len(out) <= limit and not decomp.eof:
            out += decomp.decompress(pending, limit + 1 - len(out))
            pending = decomp.unconsumed_tail
        if decomp.eof or len(out) > limit:
            return out
    if not decomp.eof:
        raise EOFError("compressed data ends early")
    return out


def _decompress(
    f: BinaryIO, decomp: bz2.BZ2Decompressor | lzma.LZMADecompressor, remaining: int, limit: int
) -> bytearray:
    """bzip2 or lzma, never producing more than limit + 1 bytes."""
    out = bytearray()
    for chunk in _chunks(f, remaining):
        out += decomp.decompress(chunk, limit + 1 - len(out))
        while not decomp.eof and not decomp.needs_input and len(out) <= limit:
            out += decomp.decompress(b"", limit + 1 - len(out))
        if decomp.eof or len(out) > limit:
            return out
    return out
