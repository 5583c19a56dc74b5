"""Hand-built adversarial files for the tests: TIFFs with duplicate tags, zips with forged records."""

from __future__ import annotations

import io
import struct
import zipfile

# (tag, type, value) entries; type 3 = SHORT, 4 = LONG
Entry = tuple[int, int, int]


def tiff(
    entries: list[Entry], pixels: bytes, *, big: bool = False, endian: str = "<", next_ifds: int = 0
) -> bytes:
    """A TIFF (or BigTIFF) whose first IFD holds `entries` in the given order (duplicates allowed),
    followed by `pixels` as its one strip (StripOffsets/StripByteCounts are appended)."""
    mark = b"II" if endian == "<" else b"MM"
    header_size = 16 if big else 8
    entry_size, count_size = (20, 8) if big else (12, 2)
    full = [*entries, (273, 4, 0), (279, 4, len(pixels))]
    ifd_size = count_size + len(full) * entry_size + (8 if big else 4)
    strip_at = header_size + ifd_size
    full[-2] = (273, 4, strip_at)
    if big:
        out = mark + struct.pack(endian + "HHHQ", 43, 8, 0, header_size)
        out += struct.pack(endian + "Q", len(full))
        for tag, typ, value in full:
            packed = struct.pack(endian + {3: "H", 4: "I"}.get(typ, "Q"), value)
            out += struct.pack(endian + "HHQ", tag, typ, 1) + packed.ljust(8, b"\0")
        out += struct.pack(endian + "Q", 0)
    else:
        out = mark + struct.pack(endian + "HI", 42, header_size)
        out += struct.pack(endian + "H", len(full))
        for tag, typ, value in full:
            packed = struct.pack(endian + ("H" if typ == 3 else "I"), value)
            out += struct.pack(endian + "HHI", tag, typ, 1) + packed.ljust(4, b"\0")
        out += struct.pack(endian + "I", 0)
    return out + pixels


def gray_tiff(width: int, height: int, *, dup_width: int | None = None, dup_first: bool = True) -> bytes:
    """An uncompressed 8-bit grey TIFF of width x height. With `dup_width`, a second ImageWidth entry
    is added: after the real one (dup_first=True, libtiff uses the real one), or before it."""
    width_entries: list[Entry] = [(256, 4, width)]
    if dup_width is not None:
        extra: Entry = (256, 4, dup_width)
        width_entries = [*width_entries, extra] if dup_first else [extra, *width_entries]
    entries: list[Entry] = [
        *width_entries,
        (257, 4, height),
        (258, 3, 8),  # BitsPerSample
        (259, 3, 1),  # Compression: none
        (262, 3, 1),  # Photometric: black is zero
        (277, 3, 1),  # SamplesPerPixel
        (278, 4, height),  # RowsPerStrip
    ]
    return tiff(entries, bytes((x * 7) % 256 for x in range(width * height)))


def zip_bytes(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def central_records(data: bytes) -> list[int]:
    """Offsets of every central-directory record (PK\\x01\\x02) of a small archive we built."""
    eocd = data.rfind(b"PK\x05\x06")
    _, _, _, _, count, _size, offset, _ = struct.unpack("<4s4H2LH", data[eocd : eocd + 22])
    found, pos = [], offset
    for _ in range(count):
        found.append(pos)
        name_len, extra_len, comment_len = struct.unpack("<3H", data[pos + 28 : pos + 34])
        pos += 46 + name_len + extra_len + comment_len
    return found


def patch_entry(
    data: bytes,
    index: int,
    *,
    flags: int | None = None,
    version: int | None = None,
    name_byte: int | None = None,
    method: int | None = None,
    file_size: int | None = None,
) -> bytes:
    """Change one central-directory record: flag bits, needed version, first name byte, method, and
    the declared uncompressed size."""
    buf = bytearray(data)
    pos = central_records(data)[index]
    if flags is not None:
        struct.pack_into("<H", buf, pos + 8, flags)
    if version is not None:
        buf[pos + 6] = version
    if method is not None:
        struct.pack_into("<H", buf, pos + 10, method)
    if name_byte is not None:
        buf[pos + 46] = name_byte
    if file_size is not None:
        struct.pack_into("<L", buf, pos + 24, file_size)
    return bytes(buf)


def local_data_offset(data: bytes, index: int) -> int:
    """Where entry `index`'s (compressed) bytes start: after its local header, name and extra."""
    pos = central_records(data)[index]
    (header,) = struct.unpack("<L", data[pos + 42 : pos + 46])
    name_len, extra_len = struct.unpack("<2H", data[header + 26 : header + 30])
    return int(header) + 30 + name_len + extra_len


def forged_eocd(*, entries: int, cd_size: int, zip64: bool = False) -> bytes:
    """An archive that is only an end-of-central-directory record claiming `entries` entries in a
    central directory of `cd_size` bytes (the way a many-tiny-entries bomb announces itself), without
    writing the entries. With zip64, the counts live in a zip64 EOCD record and the classic one says
    0xFFFF / 0xFFFFFFFF."""
    if not zip64:
        return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, entries, entries, cd_size, 0, 0)
    eocd64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, cd_size, 0)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 1)
    classic = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return eocd64 + locator + classic


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment of a JPEG; a scan's segment runs to the end of its data."""
    pos, out = 2, []
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            break
        end = pos + 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker == 0xDA:  # entropy-coded data: up to the next marker that is not stuffing or RSTn
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        out.append((marker, pos, end))
        pos = end
    return out


def scan_bomb(width: int, height: int, scans: int) -> bytes:
    """A progressive JPEG scan bomb (issue 23, item 4): a flat grey progressive JPEG whose first AC scan
    (with its Huffman table) is repeated `scans` times. Each copy is a few dozen bytes (one EOB run over
    every block), yet the decoder walks every block of the image once per scan."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    segments = _jpeg_segments(data)
    for i, (marker, start, end) in enumerate(segments):
        if marker == 0xDA and data[start + 5 + 2 * data[start + 4]] > 0:  # Ss > 0: an AC scan
            first = segments[i - 1][1] if segments[i - 1][0] == 0xC4 else start
            return data[: segments[-1][1]] + data[first:end] * scans + b"\xff\xd9"
    raise AssertionError("no AC scan in a progressive JPEG")
