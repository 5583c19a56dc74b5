"""The one reader of TIFF directories (IFDs), classic and BigTIFF, for the TIFF header check
(indexer/media/decode.py) and for telling camera RAW from TIFF (indexer/media/raw.py).

Read the way libtiff reads them: the FIRST entry of a tag counts (libtiff ignores later duplicates).
A short directory raises struct.error; callers decide what that means."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

MAX_ENTRIES: Final = 4096  # libtiff refuses a directory with more (its sanity check)


@dataclass(frozen=True)
class Layout:
    """Byte order and offset width of a TIFF file, from its first four bytes."""

    endian: str  # "<" or ">"
    big: bool  # BigTIFF: 8-byte offsets and counts

    @classmethod
    def of(cls, data: bytes) -> Layout:
        return cls("<" if data[:2] == b"II" else ">", data[2:4] in (b"+\x00", b"\x00+"))

    @property
    def count_format(self) -> str:
        return "Q" if self.big else "H"

    @property
    def entry_head(self) -> str:
        """tag, type, count of one entry (its value field follows)."""
        return self.endian + ("HHQ" if self.big else "HHI")

    @property
    def entry_size(self) -> int:
        return 20 if self.big else 12


@dataclass(frozen=True)
class Entry:
    type: int
    count: int
    field: int  # offset of the entry's value field in the file


def entry_count(data: bytes, layout: Layout, offset: int) -> int:
    """How many entries the directory at ``offset`` says it has."""
    size = struct.calcsize(layout.count_format)
    (count,) = struct.unpack(layout.endian + layout.count_format, data[offset : offset + size])
    return int(count)


def directory(data: bytes, layout: Layout, offset: int) -> dict[int, Entry]:
    """Tag -> entry of the directory at ``offset`` (at most MAX_ENTRIES entries; the first of duplicate
    tags), in the order of the file."""
    count = min(entry_count(data, layout, offset), MAX_ENTRIES)
    base = offset + struct.calcsize(layout.count_format)
    head = struct.calcsize(layout.entry_head)
    entries: dict[int, Entry] = {}
    for i in range(count):
        off = base + i * layout.entry_size
        tag, typ, n = struct.unpack(layout.entry_head, data[off : off + head])
        entries.setdefault(tag, Entry(typ, n, off + head))
    return entries


def ints(data: bytes, layout: Layout, entry: Entry, max_count: int = 64) -> list[int]:
    """The unsigned SHORT/LONG/IFD values of a classic-TIFF entry ([] for another type or too many)."""
    fmt = {3: "H", 4: "I", 13: "I"}.get(entry.type)
    if fmt is None or entry.count > max_count:
        return []
    size = struct.calcsize(fmt) * entry.count
    field = entry.field
    start = field if size <= 4 else struct.unpack(layout.endian + "I", data[field : field + 4])[0]
    return list(struct.unpack(f"{layout.endian}{entry.count}{fmt}", data[start : start + size]))
