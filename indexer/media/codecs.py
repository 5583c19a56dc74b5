"""HEIF/HEIC, AVIF and JPEG XL: magic bytes, header dimensions (before any pixel is decoded) and decoding.

``indexer.media.decode`` calls these for the formats that OpenCV cannot read; the rules are the same as for
every other format (see that module): the pixel cap is checked from the header first, the image comes
out as RGB uint8 in display orientation, alpha is dropped (as PIL's ``convert("RGB")`` and OpenCV do for
PNG), and samples deeper than 8 bits are brought to 8 bits.

Decoders, chosen by licence, wheels for CPython 3.11 on linux x86_64 and aarch64, and speed:

- HEIF/HEIC: ``pi-heif`` (libheif + libde265, LGPL; the binding is BSD). It is pillow-heif's decode-only
  build: the same libheif, without the GPL x265 encoder that pillow-heif bundles. libheif applies the
  container's ``irot``/``imir``/``clap`` transforms; the EXIF orientation inside a HEIF is informative
  only (HEIF spec, libheif, pillow-heif and Apple all ignore it), so it is not applied a second time.
  The primary item (``pitm``) is decoded: it is what viewers show, and it is the item whose ``ispe`` the
  pixel cap reads. 10/12-bit images go through libheif's own conversion to 8 bits, as pillow-heif's
  Pillow plugin does by default.
- AVIF: Pillow's own AVIF plugin (libavif + dav1d, BSD; built into the Pillow wheels since 11.3 and
  upstreamed from pillow-avif-plugin, which is therefore not needed). Pillow turns ``irot``/``imir`` into
  an EXIF orientation (overriding any EXIF one), which is then applied; 10/12-bit is converted to 8 bits
  by libavif.
- JPEG XL: ``imagecodecs`` (libjxl, BSD-3). pillow-jxl-plugin is GPL-3.0 and has no current aarch64 wheel
  for 3.11. libjxl applies the codestream orientation (a JPEG recompressed losslessly carries its EXIF
  orientation there). Deeper samples come back as uint16 at their own depth (read from the codestream's
  ImageMetadata here) and keep their top 8 bits, like 16-bit PNG.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from indexer.errors import PayloadTooLarge, UnsupportedMediaType
from indexer.media.budget import check_size
from indexer.media.formats import corrupt, sniff_format

HEIF_FORMATS: Final = ("heic", "heif", "avif")
FORMATS: Final = (*HEIF_FORMATS, "jxl")
FORMAT_MIME: Final[dict[str, str]] = {
    "heic": "image/heic",
    "heif": "image/heif",
    "avif": "image/avif",
    "jxl": "image/jxl",
}
CONTENT_TYPE_ALIASES: Final = frozenset(
    {"image/heic-sequence", "image/heif-sequence", "image/avif-sequence", "image/x-jxl"}
)

_HEVC_ITEMS: Final = frozenset({"hvc1", "hev1"})
_DERIVED_ITEMS: Final = frozenset({"grid", "iovl", "iden"})
_JXL_RATIOS: Final = ((1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1))
_MAX_BOXES: Final = 10_000  # a meta box with more children is not a photo


# ------------------------------------------------------------------------------------------ ISOBMFF
def _boxes(data: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    """(type, payload start, payload end) of the boxes in data[start:end]."""
    out: list[tuple[str, int, int]] = []
    pos = start
    while pos + 8 <= end and len(out) < _MAX_BOXES:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        head = 8
        if size == 1:
            if pos + 16 > end:
                raise struct.error("short box header")
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise struct.error(f"box {kind.decode('latin-1')!r} runs past the end of its parent or the file")
        out.append((kind.decode("latin-1"), pos + head, pos + size))
        pos += size
    return out


def _child(boxes: list[tuple[str, int, int]], kind: str) -> tuple[int, int] | None:
    for k, start, end in boxes:
        if k == kind:
            return start, end
    return None


@dataclass(frozen=True)
class HeifHeader:
    format: str  # heic, heif or avif
    width: int
    height: int
    item_type: str


def heif_header(data: bytes) -> HeifHeader:
    """The primary item's type and ``ispe`` dimensions (stored orientation) from the ``meta`` box."""
    fmt = sniff_format(data) or "heif"
    try:
        top = _boxes(data, 0, len(data))
        ftyp = _child(top, "ftyp")
        brands = {data[i : i + 4] for i in range(ftyp[0] + 8, ftyp[1] - 3, 4)} if ftyp else set()
        if ftyp:
            brands.add(data[ftyp[0] : ftyp[0] + 4])
        meta = _child(top, "meta")
        if meta is None:
            raise corrupt(fmt, "no meta box (image sequences without a primary image are not supported)")
        children = _boxes(data, meta[0] + 4, meta[1])  # full box: skip version and flags
        pitm = _child(children, "pitm")
        if pitm is None:
            raise corrupt(fmt, "no primary item")
        wide = data[pitm[0]] != 0  # version 1: a 32-bit item id
        (primary,) = struct.unpack(">I" if wide else ">H", data[pitm[0] + 4 : pitm[0] + (8 if wide else 6)])
        types = _item_types(data, _child(children, "iinf"))
        iprp = _child(children, "iprp")
        if iprp is None:
            raise corrupt(fmt, "no item properties")
        props = _boxes(data, *iprp)
        ipco, ipma = _child(props, "ipco"), _child(props, "ipma")
        if ipco is None or ipma is None:
            raise corrupt(fmt, "no item properties")
        properties = _boxes(data, *ipco)
        size: tuple[int, int] | None = None
        for index in _associations(data, ipma, primary):
            if 1 <= index <= len(properties) and properties[index - 1][0] == "ispe":
                start = properties[index - 1][1]
                size = struct.unpack(">II", data[start + 4 : start + 12])
                break
    except (struct.error, IndexError) as exc:
        raise corrupt(fmt, str(exc) if "box" in str(exc) else "short header") from exc
    if size is None:
        raise corrupt(fmt, "the primary image has no size (ispe)")
    item_type = types.get(primary, "")
    coded = {item_type} if item_type not in _DERIVED_ITEMS else set(types.values()) - _DERIVED_ITEMS
    if "av01" in coded:
        fmt = "avif"
    elif coded & _HEVC_ITEMS:
        fmt = "heic"
    else:
        raise UnsupportedMediaType(
            f"HEIF with {item_type or 'unknown'} images is not supported (HEVC and AV1 are)",
            {"reason": "unsupported_codec", "format": "heif", "item_type": item_type},
        )
    return HeifHeader(fmt, size[0], size[1], item_type)


def _item_types(data: bytes, iinf: tuple[int, int] | None) -> dict[int, str]:
    if iinf is None:
        return {}
    start, end = iinf
    skip = 6 if data[start] == 0 else 8  # version/flags + entry count (16 or 32 bits)
    types: dict[int, str] = {}
    for kind, s, _ in _boxes(data, start + skip, end):
        if kind != "infe" or data[s] < 2:
            continue
        if data[s] == 2:
            (item_id,) = struct.unpack(">H", data[s + 4 : s + 6])
            pos = s + 8
        else:
            (item_id,) = struct.unpack(">I", data[s + 4 : s + 8])
            pos = s + 10
        types[item_id] = data[pos : pos + 4].decode("latin-1")
    return types


def _associations(data: bytes, ipma: tuple[int, int], item: int) -> list[int]:
    start, _ = ipma
    version, flags = data[start], int.from_bytes(data[start + 1 : start + 4], "big")
    (count,) = struct.unpack(">I", data[start + 4 : start + 8])
    pos = start + 8
    for _ in range(min(count, 1 << 16)):
        if version < 1:
            (item_id,) = struct.unpack(">H", data[pos : pos + 2])
            pos += 2
        else:
            (item_id,) = struct.unpack(">I", data[pos : pos + 4])
            pos += 4
        n = data[pos]
        pos += 1
        wide = bool(flags & 1)
        indices = []
        for _ in range(n):
            if wide:
                (value,) = struct.unpack(">H", data[pos : pos + 2])
                indices.append(value & 0x7FFF)
                pos += 2
            else:
                indices.append(data[pos] & 0x7F)
                pos += 1
        if item_id == item:
            return indices
    return []


# ----------------------------------------------------------------------------------------- JPEG XL
class _Bits:
    """LSB-first bit reader, as the JPEG XL codestream is written."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.bit = data, pos * 8

    def u(self, n: int) -> int:
        value = 0
        for i in range(n):
            byte = self.data[self.bit >> 3]  # IndexError when the header is cut short
            value |= ((byte >> (self.bit & 7)) & 1) << i
            self.bit += 1
        return value

    def u32(self) -> int:
        return self.u((9, 13, 18, 30)[self.u(2)]) + 1

    def dist(self, *choices: tuple[int, int]) -> int:
        """The spec's U32(): a 2-bit selector, then ``bits`` more bits plus ``offset``."""
        bits, offset = choices[self.u(2)]
        return self.u(bits) + offset

    def size(self) -> tuple[int, int]:
        """A SizeHeader: width, height."""
        small = self.u(1)
        height = (self.u(5) + 1) * 8 if small else self.u32()
        ratio = self.u(3)
        if ratio:
            num, den = _JXL_RATIOS[ratio - 1]
            return height * num // den, height
        return ((self.u(5) + 1) * 8 if small else self.u32()), height

    def skip_preview(self) -> None:
        for axis in range(2):
            if self.u(1):  # div8
                self.dist((0, 16), (0, 32), (5, 1), (9, 33))
            else:
                self.dist((6, 1), (8, 65), (10, 321), (12, 1345))
            if axis == 0 and self.u(3):  # ratio: no explicit width
                return

    def skip_animation(self) -> None:
        self.dist((0, 100), (0, 1000), (10, 1), (30, 1))
        self.dist((0, 1), (0, 1001), (8, 1), (10, 1))
        self.dist((0, 0), (3, 0), (16, 0), (32, 0))
        self.u(1)


_JXL_HEADER_BYTES: Final = 64 * 1024  # the SizeHeader and ImageMetadata lie well within this


def _jxl_codestream(data: bytes) -> bytes:
    """The start of the codestream: the bytes themselves when bare, else the payload of the container's
    ``jxlc``, or the payloads of its ``jxlp`` boxes joined in order. A codestream may be split anywhere,
    even right after its 2-byte signature, so the header is read from the joined parts (as libjxl
    reads it), never from the first part alone."""
    if data[:2] == b"\xff\x0a":
        return data[:_JXL_HEADER_BYTES]
    parts: list[bytes] = []
    size = 0
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind == "jxlc" and not parts:
            return data[start : min(end, start + _JXL_HEADER_BYTES)]
        if kind == "jxlp":
            if end - start < 4:
                raise corrupt("jxl", "short jxlp box")
            (index,) = struct.unpack(">I", data[start : start + 4])
            if index & 0x7FFFFFFF != len(parts):
                raise corrupt("jxl", "jxlp boxes out of order")
            parts.append(data[start + 4 : end])
            size += end - start - 4
            if index & 0x80000000 or size >= _JXL_HEADER_BYTES:  # the last part, or enough for the header
                break
    if not parts:
        raise corrupt("jxl", "no codestream box")
    return b"".join(parts)[:_JXL_HEADER_BYTES]


def _jxl_header(data: bytes) -> tuple[int, int, int]:
    """Width and height (SizeHeader, stored orientation) and bits per sample (ImageMetadata)."""
    try:
        stream = _jxl_codestream(data)
        if stream[:2] != b"\xff\x0a":
            raise corrupt("jxl", "bad codestream signature")
        bits = _Bits(stream, 2)
        width, height = bits.size()
        depth = 8
        if not bits.u(1):  # all_default
            if bits.u(1):  # extra_fields
                bits.u(3)  # orientation
                if bits.u(1):
                    bits.size()  # intrinsic size
                if bits.u(1):
                    bits.skip_preview()
                if bits.u(1):
                    bits.skip_animation()
            if bits.u(1):  # float samples
                depth = bits.dist((0, 32), (0, 16), (0, 24), (6, 1))
            else:
                depth = bits.dist((0, 8), (0, 10), (0, 12), (6, 1))
    except (struct.error, IndexError) as exc:
        raise corrupt("jxl", "short header") from exc
    return width, height, depth


def jxl_size(data: bytes) -> tuple[int, int]:
    width, height, _ = _jxl_header(data)
    return width, height


# ---------------------------------------------------------------------------------------- decoding
def _to_rgb8(pixels: NDArray[Any], fmt: str, bits: int = 16) -> NDArray[np.uint8]:
    """Grey, grey+alpha, RGB or RGBA to RGB uint8: alpha dropped; ``bits``-deep samples keep their top 8
    bits (16-bit PNG's rule: the high byte)."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> max(0, bits - 8)).astype(np.uint8)
    elif pixels.dtype.kind == "f":
        pixels = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise corrupt(fmt, f"unexpected sample type {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise corrupt(fmt, f"unexpected pixel layout {pixels.shape}")
    if pixels.shape[2] <= 2:
        return np.ascontiguousarray(np.repeat(pixels[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(pixels[:, :, :3])


def decode(data: bytes, fmt: str, max_pixels: int) -> NDArray[np.uint8]:
    """RGB uint8 in display orientation. The caller has checked the header's pixel count already; the
    size that the library reports once it has parsed the file is checked here again, before it decodes
    (an AVIF sequence's track is not the primary item whose ``ispe`` the header check read)."""
    if fmt == "heic":
        return _decode_heic(data, max_pixels)
    if fmt == "avif":
        return _decode_avif(data, max_pixels)
    if fmt == "jxl":
        return _decode_jxl(data, max_pixels)
    raise UnsupportedMediaType(f"no decoder for {fmt}", {"reason": "unsupported_format", "format": fmt})


def _decode_heic(data: bytes, max_pixels: int) -> NDArray[np.uint8]:
    import pi_heif

    try:
        heif = pi_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        image = heif[heif.primary_index]
        width, height = image.size
        check_size("heic", width, height, max_pixels)  # libheif's word, before it decodes
        # A copy while the HeifFile lives: np.asarray alone is a view of libheif's buffer, which goes
        # with the HeifFile (read back as garbage once it is collected).
        pixels = np.array(image, copy=True)
    except (ValueError, RuntimeError, OSError, SyntaxError, EOFError, IndexError) as exc:
        raise corrupt("heic", str(exc)[:200]) from exc
    return _to_rgb8(pixels, "heic")


def _decode_avif(data: bytes, max_pixels: int) -> NDArray[np.uint8]:
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data), formats=["AVIF"]) as opened:
            # libavif's word after parsing, before any pixel: an image sequence (brand avis) decodes its
            # track, whose size the primary item's ispe need not tell
            width, height = opened.size
            check_size("avif", width, height, max_pixels)
            opened.load()
            image = ImageOps.exif_transpose(opened)
            pixels = np.asarray(image)
    except Image.DecompressionBombError as exc:  # Pillow's own cap, above ours only if MAX_IMAGE_PIXELS is
        raise PayloadTooLarge(str(exc), {"reason": "too_many_pixels", "format": "avif"}) from exc
    except (ValueError, RuntimeError, OSError, SyntaxError, EOFError) as exc:
        raise corrupt("avif", str(exc)[:200]) from exc
    return _to_rgb8(pixels, "avif")


def _decode_jxl(data: bytes, max_pixels: int) -> NDArray[np.uint8]:
    import imagecodecs

    _, _, depth = _jxl_header(data)  # libjxl hands back deeper samples at their own depth, in uint16
    try:
        pixels = imagecodecs.jpegxl_decode(data, index=0)
    except (imagecodecs.JpegxlError, ValueError, RuntimeError) as exc:
        raise corrupt("jxl", str(exc)[:200]) from exc
    out = np.asarray(pixels)
    check_size("jxl", out.shape[1], out.shape[0], max_pixels)  # libjxl's word (it has no header call here)
    return _to_rgb8(out, "jxl", depth)
