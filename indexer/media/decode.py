"""Image decoding and validation with OpenCV.

Every failure is a typed error with an exact reason, never a crash:

- zero bytes                       -> InvalidInput "empty file"
- bytes that are no known format   -> UnsupportedMediaType "not an image (unrecognised format)"
- a known format that cannot be decoded (truncated, corrupt)
                                   -> InvalidInput "truncated or corrupt JPEG" (PNG, GIF, ...)
- more pixels than allowed         -> PayloadTooLarge "image is 20000x20000 = 400000000 pixels, over the
                                      limit of 64000000"; read from the header BEFORE any decode, so a
                                      decompression bomb never allocates its pixels.

Decoded images are RGB uint8 in display orientation (EXIF orientation applied by OpenCV). Alpha is
dropped and 16-bit samples keep their high byte, exactly as PIL's ``convert("RGB")`` does, so the
model sees what the reference pipeline (open_clip on PIL) sees.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from indexer.errors import InvalidInput, UnsupportedMediaType
from indexer.media import codecs, raw, tiff
from indexer.media.budget import check_size
from indexer.media.formats import corrupt, sniff_format

# HEIF/HEIC, AVIF and JPEG XL decode in indexer.media.codecs, camera RAW in indexer.media.raw; the
# rules are the same.
FORMATS: Final = ("jpeg", "png", "webp", "gif", "bmp", "tiff", *codecs.FORMATS, *raw.FORMATS)
FORMAT_MIME: Final[dict[str, str]] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    **codecs.FORMAT_MIME,
    **raw.FORMAT_MIME,
}
# Content types a client may declare for an upload; the bytes decide the format in the end.
ACCEPTED_CONTENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        *FORMAT_MIME.values(),
        "image/jpg",
        "image/pjpeg",
        "image/x-png",
        "image/x-ms-bmp",
        "image/x-bmp",
        "image/tif",
        "image/x-tiff",
        *codecs.CONTENT_TYPE_ALIASES,
        *raw.CONTENT_TYPE_ALIASES,
        "application/octet-stream",
    }
)

_JPEG_REDUCED: Final = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)
_RGB_FLAG: Final = cv2.IMREAD_COLOR_RGB
_JPEG_SOF: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, before any pixel is decoded (stored orientation, not EXIF-rotated)."""

    format: str
    width: int
    height: int
    # A buffer the decoder allocates besides the image, when it can be larger: a TIFF's tile (width,
    # height), which libtiff allocates whole however small the image is.
    buffer: tuple[int, int] | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """An RGB image in display orientation.

    ``width`` and ``height`` are the full-resolution display dimensions. ``pixels`` may be smaller when
    the caller allowed a reduced decode (``reduction`` is then 2, 4 or 8, or about the ratio of the sides
    for a RAW's preview). Preprocess it with ``preprocess(image.pixels, cfg, source=image)`` (a
    ``indexer.preprocess.Source``): the resize is then planned from the full size, as the reference does on
    the full decode; planned from the reduced pixels' own size, the crop shifts by up to a model pixel.
    """

    pixels: NDArray[np.uint8] = field(repr=False)
    format: str
    width: int
    height: int
    reduction: int = 1
    step: tuple[float, float] | None = None  # see pixel_step; None: ``reduction`` along both axes

    @property
    def pixel_step(self) -> tuple[float, float]:
        """How many full-resolution pixels one decoded pixel covers along x and y: ``reduction`` for
        libjpeg's DCT scaling and for area averaging (decoded pixel i covers [i*k, (i+1)*k) of the full
        image, the last one partial or left out), the ratio of the sides for a RAW's preview."""
        return self.step or (float(self.reduction), float(self.reduction))

    @property
    def content_type(self) -> str:
        return FORMAT_MIME[self.format]


# --------------------------------------------------------------------------------------- sniffing
def check_content_type(content_type: str | None) -> None:
    """Reject a declared content type that is not an image we accept (the bytes are checked later)."""
    if content_type is None:
        return
    base = content_type.split(";", 1)[0].strip().lower()
    if base and base not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"unsupported content type {base!r}; send one of {', '.join(FORMAT_MIME.values())}",
            {"reason": "unsupported_content_type", "content_type": base},
        )


# ---------------------------------------------------------------------------------------- headers
def _jpeg_layout(data: bytes) -> tuple[int, int, int]:
    """Width, height and the offset of the first scan, walking the marker segments."""
    pos, n = 2, len(data)
    size: tuple[int, int] | None = None
    while pos < n:
        if data[pos] != 0xFF:
            raise corrupt("jpeg", "bad marker")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            break
        if marker == 0xDA:
            if size is None:
                break
            return size[0], size[1], pos
        if pos + 2 > n:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise corrupt("jpeg", "bad segment length")
        if size is None and marker in _JPEG_SOF:
            if pos + 7 > n:
                break
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            size = (width, height)
        pos += length
    if size is None:
        raise corrupt("jpeg", "no frame header")
    raise corrupt("jpeg", "no image data")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    width, height, _ = _jpeg_layout(data)
    return width, height


def _jpeg_complete(data: bytes) -> bool:
    """An end-of-image marker after the first scan. 0xFFD9 cannot occur inside entropy-coded data
    (0xFF is always stuffed there), and trailing data after EOI (motion photos) is allowed. Searched
    from the end, where the marker almost always is: a forward search reads the whole entropy-coded
    stream (about 0.3 ms for a 300 KB photo, whose stuffed 0xFF bytes slow the search)."""
    _, _, sos = _jpeg_layout(data)
    return data.rfind(b"\xff\xd9", sos) != -1


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise corrupt("png", "no IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _gif_size(data: bytes) -> tuple[int, int]:
    """The logical screen, grown to cover the first frame: a frame may claim more than the screen."""
    if len(data) < 13:
        raise corrupt("gif", "short header")
    width, height = struct.unpack("<HH", data[6:10])
    pos = 13 + (3 << ((data[10] & 0x07) + 1) if data[10] & 0x80 else 0)
    while pos < len(data):
        block = data[pos]
        if block == 0x2C:  # image descriptor: left, top, width, height
            left, top, fw, fh = struct.unpack("<HHHH", data[pos + 1 : pos + 9])
            return max(width, left + fw), max(height, top + fh)
        if block != 0x21:  # only extensions may come before the first frame
            break
        pos += 2
        while pos < len(data) and data[pos]:  # sub-blocks
            pos += data[pos] + 1
        pos += 1
    return width, height


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise corrupt("bmp", "short header")
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        if data[23:26] != b"\x9d\x01\x2a":
            raise corrupt("webp", "bad VP8 start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        if data[20] != 0x2F:
            raise corrupt("webp", "bad VP8L signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise corrupt("webp", "unknown chunk")


# TIFF field types that libtiff reads as an unsigned integer (TIFFReadDirEntryLong): format, signed.
_TIFF_INT_TYPES: Final[dict[int, str]] = {
    1: "B",  # BYTE
    3: "H",  # SHORT
    4: "I",  # LONG
    6: "b",  # SBYTE
    8: "h",  # SSHORT
    9: "i",  # SLONG
    13: "I",  # IFD
    16: "Q",  # LONG8
    17: "q",  # SLONG8
    18: "Q",  # IFD8
}
TIFF_MAX_IFD_ENTRIES: Final = tiff.MAX_ENTRIES


_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 322, 323
_TIFF_SIZE_TAGS: Final = frozenset({256, 257, _TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH})


def _tiff_size(data: bytes) -> tuple[int, int]:
    found = _tiff_tags(data)
    return found[256], found[257]


def _tiff_tile(data: bytes) -> tuple[int, int] | None:
    """TileWidth and TileLength of the first IFD when it is tiled: libtiff allocates a whole tile to
    decode into (and OpenCV a tile buffer of its own), whatever the image's size. Strips need no such
    bound: libtiff clamps RowsPerStrip to the image's height."""
    found = _tiff_tags(data)
    if _TIFF_TILE_WIDTH in found or _TIFF_TILE_LENGTH in found:
        return found.get(_TIFF_TILE_WIDTH, 0), found.get(_TIFF_TILE_LENGTH, 0)
    return None


def _tiff_tags(data: bytes) -> dict[int, int]:
    """ImageWidth and ImageLength (and TileWidth, TileLength when present) of the first IFD, the one
    page that OpenCV's imdecode decodes.

    Read the way libtiff reads them, so that the pixel cap sees what the decoder will allocate: the
    FIRST entry of a tag counts (libtiff ignores later duplicates), the value must be one integer of a
    type libtiff accepts, and BigTIFF is read like classic TIFF. Anything libtiff would not take as it
    is, is refused as corrupt rather than guessed at."""
    layout = tiff.Layout.of(data)
    endian = layout.endian
    try:
        if layout.big:
            offset_size, zero = struct.unpack(endian + "HH", data[4:8])
            if offset_size != 8 or zero != 0:
                raise corrupt("tiff", "bad BigTIFF header")
            (ifd,) = struct.unpack(endian + "Q", data[8:16])
            header = 16
        else:
            (ifd,) = struct.unpack(endian + "I", data[4:8])
            header = 8
        if ifd < header or ifd >= len(data):
            raise corrupt("tiff", "first IFD offset outside the file")
        count = tiff.entry_count(data, layout, ifd)
        if count > tiff.MAX_ENTRIES:
            raise corrupt("tiff", f"IFD with {count} entries")
        if ifd + struct.calcsize(layout.count_format) + count * layout.entry_size > len(data):
            raise corrupt("tiff", "short IFD")
        found: dict[int, int] = {}
        for tag, entry in tiff.directory(data, layout, ifd).items():
            if tag not in _TIFF_SIZE_TAGS:  # tiff.directory keeps the first of duplicate tags, as libtiff
                continue
            fmt = _TIFF_INT_TYPES.get(entry.type)
            if fmt is None or entry.count != 1:
                raise corrupt("tiff", f"tag {tag} of type {entry.type} with {entry.count} values")
            (value,) = struct.unpack(endian + fmt, data[entry.field : entry.field + struct.calcsize(fmt)])
            if value < 0 or value > 0xFFFFFFFF:
                raise corrupt("tiff", f"tag {tag} value {value} out of range")
            found[tag] = value
    except struct.error as exc:
        raise corrupt("tiff", "short IFD") from exc
    if 256 not in found or 257 not in found:
        raise corrupt("tiff", "no image dimensions")
    return found


_SIZE_READERS = {
    "jpeg": _jpeg_size,
    "png": _png_size,
    "gif": _gif_size,
    "bmp": _bmp_size,
    "webp": _webp_size,
    "tiff": _tiff_size,
}


def read_header(data: bytes) -> ImageHeader:
    """Format and stored dimensions from the header alone (no pixel is decoded)."""
    if not data:
        raise InvalidInput("empty file", {"reason": "empty"})
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedMediaType(
            "not an image (unrecognised format)",
            {"reason": "unrecognised_format", "supported": list(FORMATS)},
        )
    if fmt == "tiff":
        fmt = raw.tiff_raw_kind(data) or fmt
    try:
        if fmt in codecs.HEIF_FORMATS:  # the primary item's codec decides heic or avif
            heif = codecs.heif_header(data)
            fmt, width, height = heif.format, heif.width, heif.height
        elif fmt in raw.FORMATS:
            width, height = raw.raw_size(data, fmt)
        elif fmt == "jxl":
            width, height = codecs.jxl_size(data)
        else:
            width, height = _SIZE_READERS[fmt](data)
    except struct.error as exc:
        raise corrupt(fmt, "short header") from exc
    if width <= 0 or height <= 0:
        raise corrupt(fmt, f"invalid dimensions {width}x{height}")
    return ImageHeader(fmt, width, height, _tiff_tile(data) if fmt == "tiff" else None)


def check_pixels(header: ImageHeader, max_pixels: int) -> None:
    """The header's image, and any larger buffer the decoder would set up for it, within the budget."""
    check_size(header.format, header.width, header.height, max_pixels)
    if header.buffer is not None:
        check_size(header.format, *header.buffer, max_pixels, what="one tile of the image")


# ---------------------------------------------------------------------------------------- decoding
def decode_image(
    data: bytes, max_pixels: int, *, min_side: int | None = None, exif_orientation: bool = True
) -> DecodedImage:
    """Decode to RGB uint8 in display orientation.

    ``min_side``: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (much faster) as long
    as its shorter side stays >= ``min_side``, and a camera RAW may use its embedded preview when that is
    at least as large. None means full resolution. ``exif_orientation=False`` leaves a JPEG as stored
    (a RAW's preview, which the RAW's own orientation turns).
    """
    header = read_header(data)
    check_pixels(header, max_pixels)
    if header.format == "jpeg" and not _jpeg_complete(data):
        raise corrupt("jpeg", "no end-of-image marker")
    if header.format in codecs.FORMATS or header.format in raw.FORMATS:
        return _decode_other(data, header, max_pixels, min_side)

    reduction, flags = 1, _RGB_FLAG
    if header.format == "jpeg" and min_side is not None:
        short = min(header.width, header.height)
        for factor, flag in _JPEG_REDUCED:
            if short // factor >= min_side:
                reduction, flags = factor, (flag & ~cv2.IMREAD_COLOR) | _RGB_FLAG
                break
    if not exif_orientation:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        decoded = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise corrupt(header.format, "decoder error") from exc
    if decoded is None or decoded.ndim != 3 or decoded.shape[2] != 3 or decoded.dtype != np.uint8:
        raise corrupt(header.format)
    pixels: NDArray[np.uint8] = np.asarray(decoded, dtype=np.uint8)

    width, height = header.width, header.height
    got_h, got_w = pixels.shape[:2]
    if (got_w > got_h) != (width > height) and width != height:  # EXIF orientation 5-8 swapped the axes
        width, height = height, width
    if reduction == 1 and min_side is not None:
        pixels, reduction = area_reduce(pixels, min_side)
    return DecodedImage(pixels=pixels, format=header.format, width=width, height=height, reduction=reduction)


def area_reduce(pixels: NDArray[np.uint8], min_side: int) -> tuple[NDArray[np.uint8], int]:
    """A format that cannot decode at reduced scale (PNG, WebP, TIFF...) is decoded in full, then reduced
    at once by the largest factor of 2, 4 or 8 that keeps its shorter side >= ``min_side`` (area
    averaging, as libjpeg's DCT scaling does), so that only the small copy is kept: an 8000x8000 PNG's
    192 MB of pixels live for one resize instead of through preprocessing, whose float planes would
    take 768 MB more. Returns the pixels and the factor (1: unchanged). Preprocessing takes the result as
    the full-size image it stands for (``DecodedImage.pixel_step``), which keeps parity (issue 26)."""
    h, w = pixels.shape[:2]
    for factor, _ in _JPEG_REDUCED:
        if min(h, w) // factor >= min_side:
            return area_by_whole_factor(pixels, factor), factor
    return pixels, 1


def area_by_whole_factor(pixels: NDArray[np.uint8], k: int) -> NDArray[np.uint8]:
    """Area averaging by the whole factor ``k``, on the image less its last h % k rows and w % k columns:
    OpenCV takes its fast path only when the factor is whole (about 4x faster than any other factor)."""
    h, w = pixels.shape[:2]
    whole = pixels[: h - h % k, : w - w % k]
    size = (max(1, w // k), max(1, h // k))
    return np.asarray(cv2.resize(whole, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _decode_other(data: bytes, header: ImageHeader, max_pixels: int, min_side: int | None) -> DecodedImage:
    """HEIF/HEIC, AVIF and JPEG XL (indexer.media.codecs), camera RAW (indexer.media.raw); header
    already checked."""
    if header.format in raw.FORMATS:
        previews: list[DecodedImage] = []

        def preview(jpeg: bytes, side: int | None) -> NDArray[np.uint8]:
            previews.append(decode_image(jpeg, max_pixels, min_side=side, exif_orientation=False))
            return previews[-1].pixels

        image = raw.decode(data, header.format, max_pixels, min_side, preview)
        short = min(image.pixels.shape[:2])
        return DecodedImage(
            pixels=image.pixels,
            format=header.format,
            width=image.width,
            height=image.height,
            reduction=max(1, round(min(image.width, image.height) / max(short, 1))),
            step=_preview_step(image, previews[-1]) if image.preview else None,
        )
    pixels = codecs.decode(
        data, header.format, max_pixels
    )  # always full resolution, transforms (irot, clap) applied
    width, height = pixels.shape[1], pixels.shape[0]
    reduction = 1
    if min_side is not None:
        pixels, reduction = area_reduce(pixels, min_side)
    return DecodedImage(pixels=pixels, format=header.format, width=width, height=height, reduction=reduction)


def _preview_step(image: raw.RawImage, preview: DecodedImage) -> tuple[float, float]:
    """A RAW preview spans the sensor image (the aspect is checked in indexer.raw): full-resolution pixels
    per preview pixel, times the preview's own DCT reduction. LibRaw's flip may have transposed it."""
    turned = image.pixels.shape[:2] != preview.pixels.shape[:2]
    pw, ph = (preview.height, preview.width) if turned else (preview.width, preview.height)
    return image.width / pw * preview.reduction, image.height / ph * preview.reduction


def make_thumbnail(image: DecodedImage | NDArray[np.uint8], max_side: int, quality: int = 85) -> bytes:
    """A JPEG whose longer side is at most ``max_side`` (never upscaled)."""
    if max_side <= 0:
        raise InvalidInput("thumbnail size must be positive", {"max_side": max_side})
    pixels = image.pixels if isinstance(image, DecodedImage) else image
    h, w = pixels.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        pixels = shrink(pixels, (max(1, round(w * scale)), max(1, round(h * scale))))
    ok, enc = cv2.imencode(
        ".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:  # pragma: no cover - encoding an RGB uint8 array does not fail
        raise InvalidInput("could not encode thumbnail")
    return bytes(enc.tobytes())


def shrink(pixels: NDArray[np.uint8], size: tuple[int, int]) -> NDArray[np.uint8]:
    """Downscale to ``size`` (width, height): area averaging by the largest whole factor k that keeps
    both sides >= the target, then bilinear for the rest (a factor below 2, where bilinear reads every
    pixel). The area step takes OpenCV's fast path (about 0.2 ms from 600x450 RGB, against 1.4 ms for
    area averaging at any other factor), and the bilinear step maps each output pixel back to where it
    lies in the whole image (an affine warp), so that nothing shifts. Against a Lanczos resize of the
    same pixels, PSNR >= 33 dB on the benchmark photos: as close as the thumbnail's own JPEG q85
    encoding (about 33 dB)."""
    h, w = pixels.shape[:2]
    k = min(w // size[0], h // size[1])
    if k < 2:
        return np.asarray(cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    reduced = area_by_whole_factor(pixels, k)
    ax, ay = w / (size[0] * k), h / (size[1] * k)  # output pixel -> reduced pixel, centres aligned
    inverse = np.array([[ax, 0.0, 0.5 * ax - 0.5], [0.0, ay, 0.5 * ay - 0.5]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(reduced, inverse, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(warped, dtype=np.uint8)
