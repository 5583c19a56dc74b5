"""Camera RAW (DNG, CR2, CR3, NEF, ARW, RAF, ORF) through rawpy (LibRaw; rawpy is MIT, LibRaw LGPL/CDDL).

- Recognised by their bytes: CR3, RAF and ORF by their own magic, CR2 by its TIFF header's ``CR`` mark,
  and DNG, NEF, ARW (TIFF files to the first bytes) by a DNGVersion tag or a CFA/LinearRaw image in the
  first IFD or its SubIFDs. A plain TIFF stays a TIFF.
- The pixel cap is checked on the larger of LibRaw's ``raw_width x raw_height`` and the output size its
  postprocess will produce (the visible area stretched by the pixel aspect, a DNG's DefaultScale: up
  to about 10x), read when LibRaw opens the file (it parses the metadata, it does not unpack the sensor
  data), before anything is decoded.
- The embedded preview JPEG (the camera's own rendering) is used when it is large enough for the model
  (shorter side >= ``min_side``) and has the sensor image's aspect ratio; it is decoded like any JPEG
  (header check, reduced DCT decode) and turned by the RAW's orientation (LibRaw's ``flip``). Otherwise,
  or when full resolution is asked for (``min_side=None``) and the preview is smaller, the sensor data is
  demosaiced by LibRaw (AHD, camera white balance, sRGB, 8 bits; LibRaw applies the orientation).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from indexer.errors import InvalidInput
from indexer.media import tiff
from indexer.media.budget import check_size
from indexer.media.formats import corrupt

FORMAT_MIME: Final[dict[str, str]] = {
    "dng": "image/x-adobe-dng",
    "cr2": "image/x-canon-cr2",
    "cr3": "image/x-canon-cr3",
    "nef": "image/x-nikon-nef",
    "arw": "image/x-sony-arw",
    "raf": "image/x-fuji-raf",
    "orf": "image/x-olympus-orf",
    "raw": "application/octet-stream",  # another TIFF-based RAW that LibRaw reads (PEF, SRW, ...)
}
FORMATS: Final = tuple(FORMAT_MIME)
CONTENT_TYPE_ALIASES: Final = frozenset({"image/dng", "image/x-dcraw", "image/x-raw"})
# A preview may differ from the sensor image's aspect by this much (margins that LibRaw crops).
PREVIEW_ASPECT_TOLERANCE: Final = 0.03
_CFA_PHOTOMETRIC: Final = frozenset({32803, 34892})  # CFA, LinearRaw
_TAG_PHOTOMETRIC, _TAG_MAKE, _TAG_SUBIFDS, _TAG_DNG_VERSION = 262, 271, 330, 50706
_MAKES: Final = (("NIKON", "nef"), ("SONY", "arw"))


# ------------------------------------------------------------------------------- TIFF-based RAW
def tiff_raw_kind(data: bytes) -> str | None:
    """ "dng", "nef", "arw" or "raw" when a TIFF file is a camera RAW, None for a plain TIFF."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    layout = tiff.Layout.of(data)
    endian = layout.endian
    try:
        (first,) = struct.unpack(endian + "I", data[4:8])
        ifd0 = tiff.directory(data, layout, first)
        if _TAG_DNG_VERSION in ifd0:
            return "dng"
        photometric = [tiff.ints(data, layout, ifd0[_TAG_PHOTOMETRIC])] if _TAG_PHOTOMETRIC in ifd0 else []
        for sub in tiff.ints(data, layout, ifd0[_TAG_SUBIFDS])[:8] if _TAG_SUBIFDS in ifd0 else []:
            entries = tiff.directory(data, layout, sub)
            if _TAG_PHOTOMETRIC in entries:
                photometric.append(tiff.ints(data, layout, entries[_TAG_PHOTOMETRIC]))
        if not any(set(p) & _CFA_PHOTOMETRIC for p in photometric):
            return None
        make = b""
        if _TAG_MAKE in ifd0:
            n, field = ifd0[_TAG_MAKE].count, ifd0[_TAG_MAKE].field
            start = field if n <= 4 else struct.unpack(endian + "I", data[field : field + 4])[0]
            make = data[start : start + min(n, 64)]
    except (struct.error, IndexError):
        return None  # not a readable RAW: the TIFF path judges it
    name = make.decode("latin-1").upper()
    return next((kind for prefix, kind in _MAKES if name.startswith(prefix)), "raw")


# ------------------------------------------------------------------------------------ LibRaw
def _open(data: bytes, fmt: str) -> Any:
    import rawpy

    raw = rawpy.RawPy()
    try:
        raw.open_buffer(io.BytesIO(data))
    except rawpy.LibRawError as exc:
        raw.close()
        raise corrupt(fmt, f"LibRaw: {exc}") from exc
    return raw


def _display_size(raw: Any) -> tuple[int, int]:
    sizes = raw.sizes
    return (sizes.height, sizes.width) if sizes.flip & 4 else (sizes.width, sizes.height)


def output_size(sizes: Any) -> tuple[int, int]:
    """The image LibRaw's postprocess will produce (before its flip), from the metadata alone: the
    visible area stretched by the pixel aspect (a DNG's DefaultScale), as LibRaw's ``stretch`` does,
    the height when the aspect is below 1, the width when above."""
    width, height, aspect = int(sizes.width), int(sizes.height), float(sizes.pixel_aspect)
    if aspect <= 0 or aspect != aspect:  # LibRaw treats a missing or broken aspect as square pixels
        return width, height
    if aspect < 1:
        return width, min(int(height / aspect + 0.5), 0xFFFF)
    if aspect > 1:
        return min(int(width * aspect + 0.5), 0xFFFF), height
    return width, height


def budget_size(sizes: Any) -> tuple[int, int]:
    """What the pixel cap checks: the larger of the sensor buffer LibRaw unpacks into (``raw_width x
    raw_height``, margins included) and the image its postprocess produces (``output_size``)."""
    raw_dims = int(sizes.raw_width), int(sizes.raw_height)
    out_dims = output_size(sizes)
    return max(raw_dims, out_dims, key=lambda dims: dims[0] * dims[1])


def raw_size(data: bytes, fmt: str) -> tuple[int, int]:
    """The size the pixel cap checks (``budget_size``), from the metadata alone."""
    raw = _open(data, fmt)
    try:
        return budget_size(raw.sizes)
    finally:
        raw.close()


def apply_flip(pixels: NDArray[np.uint8], flip: int) -> NDArray[np.uint8]:
    """LibRaw's (dcraw's) ``flip``: bit 1 mirrors rows, bit 0 columns, bit 2 transposes (3 = 180 deg,
    5 = 90 deg counter-clockwise, 6 = 90 deg clockwise)."""
    if flip & 2:
        pixels = pixels[::-1]
    if flip & 1:
        pixels = pixels[:, ::-1]
    if flip & 4:
        pixels = pixels.transpose(1, 0, 2)
    return np.ascontiguousarray(pixels)


@dataclass(frozen=True, eq=False)
class RawImage:
    pixels: NDArray[np.uint8]
    width: int  # full-resolution display size
    height: int
    preview: bool


def decode(
    data: bytes,
    fmt: str,
    max_pixels: int,
    min_side: int | None,
    decode_jpeg: Callable[[bytes, int | None], NDArray[np.uint8]],
) -> RawImage:
    """The preview when it is large enough, else LibRaw's demosaic; RGB uint8 in display orientation.

    ``decode_jpeg(jpeg, min_side)`` decodes the preview JPEG without applying any EXIF orientation (the
    RAW's own orientation is applied here), with the usual header checks."""
    import rawpy

    raw = _open(data, fmt)
    try:
        check_size(fmt, *budget_size(raw.sizes), max_pixels)  # LibRaw's word, before it unpacks
        width, height = _display_size(raw)
        preview = _preview(raw, fmt, width, height, min_side, decode_jpeg)
        if preview is not None:
            return RawImage(preview, width, height, preview=True)
        try:
            raw.unpack()
            rgb = raw.postprocess(use_camera_wb=True, output_bps=8)
        except (rawpy.LibRawError, MemoryError) as exc:
            raise corrupt(fmt, f"LibRaw: {exc}") from exc
    finally:
        raw.close()
    out: NDArray[np.uint8] = np.ascontiguousarray(rgb, dtype=np.uint8)
    if out.ndim != 3 or out.shape[2] != 3:
        raise corrupt(fmt, f"unexpected pixel layout {out.shape}")
    return RawImage(out, out.shape[1], out.shape[0], preview=False)


def _preview(
    raw: Any,
    fmt: str,
    width: int,
    height: int,
    min_side: int | None,
    decode_jpeg: Callable[[bytes, int | None], NDArray[np.uint8]],
) -> NDArray[np.uint8] | None:
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:  # none, unsupported kind, or unreadable: demosaic instead
        return None
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    try:
        pixels = decode_jpeg(bytes(thumb.data), min_side)
    except InvalidInput:
        return None  # a broken preview does not condemn the RAW
    pixels = apply_flip(pixels, int(raw.sizes.flip))
    ph, pw = pixels.shape[:2]
    if abs(pw / ph - width / height) > PREVIEW_ASPECT_TOLERANCE * (width / height):
        return None
    if min_side is None:
        return pixels if (pw, ph) == (width, height) else None
    return pixels if min(pw, ph) >= min_side else None
