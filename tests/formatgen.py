"""Files of the formats that indexer.media.codecs and indexer.media.raw decode, made with the encoders
that the same wheels ship (pillow-heif for HEIC: the encoding twin of pi-heif; Pillow for AVIF;
imagecodecs for JPEG XL and 10-bit AVIF) and a DNG written with tifffile. Plus bombs (a header that
claims too many pixels) and truncated copies."""

from __future__ import annotations

import io
import struct

import numpy as np
from numpy.typing import NDArray
from PIL import Image

ORIENTATION_TAG = 0x0112
# XYZ (D65) to linear sRGB: a DNG ColorMatrix1 for a "camera" whose native space is linear sRGB.
_XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))


def scene(width: int, height: int, seed: int = 0) -> NDArray[np.uint8]:
    """A smooth photo-like RGB image with a red block in the top-left quarter (orientation marker)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 216, size=(max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)).copy()
    img[: height // 2, : width // 2] = (220, 30, 30)
    return img


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return exif.tobytes()


def heic(rgb: NDArray[np.uint8], orientation: int = 1, quality: int = 92, bits: int = 8) -> bytes:
    """HEIC (x265 via pillow-heif); an EXIF orientation is written as irot/imir by libheif."""
    import pillow_heif

    if bits > 8:
        wide = (rgb.astype(np.uint16) << 8) | rgb  # 16-bit samples; libheif keeps the top 10 or 12
        mode = "RGBA;16" if rgb.shape[2] == 4 else "RGB;16"
        heif = pillow_heif.from_bytes(mode, (rgb.shape[1], rgb.shape[0]), wide.tobytes())
        pillow_heif.options.SAVE_HDR_TO_12_BIT = bits == 12
    else:
        heif = pillow_heif.from_pillow(Image.fromarray(rgb))
    buf = io.BytesIO()
    try:
        heif.save(buf, quality=quality, exif=_exif(orientation) if orientation != 1 else None)
    finally:
        pillow_heif.options.SAVE_HDR_TO_12_BIT = False
    return buf.getvalue()


def heic_multi(images: list[NDArray[np.uint8]], quality: int = 92) -> bytes:
    """A HEIF holding several images; the first is the primary one."""
    import pillow_heif

    heif = pillow_heif.from_pillow(Image.fromarray(images[0]))
    for extra in images[1:]:
        heif.add_from_pillow(Image.fromarray(extra))
    buf = io.BytesIO()
    heif.save(buf, quality=quality)
    return buf.getvalue()


def avif(rgb: NDArray[np.uint8], orientation: int = 1, quality: int = 90) -> bytes:
    """AVIF from Pillow's own plugin (libavif + aom); the orientation goes into irot/imir."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(
        buf, "AVIF", quality=quality, exif=_exif(orientation) if orientation != 1 else b""
    )
    return buf.getvalue()


def avif_10bit(rgb: NDArray[np.uint8]) -> bytes:
    import imagecodecs

    return bytes(
        imagecodecs.avif_encode((rgb.astype(np.uint16) << 2) | (rgb >> 6), level=90, bitspersample=10)
    )


def jxl(rgb: NDArray[np.uint8], orientation: int = 1, distance: float = 1.0) -> bytes:
    """JPEG XL (libjxl via imagecodecs). With an orientation: a JPEG carrying it in EXIF, recompressed
    losslessly (libjxl moves the orientation into the codestream header)."""
    import imagecodecs

    if orientation == 1:
        return bytes(imagecodecs.jpegxl_encode(rgb, distance=distance))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95, exif=_exif(orientation))
    return bytes(imagecodecs.jpegxl_encode_jpeg(buf.getvalue()))


def jxl_deep(rgb: NDArray[np.uint8], bits: int = 12) -> bytes:
    import imagecodecs

    wide = (rgb.astype(np.uint16) << (bits - 8)) | (rgb.astype(np.uint16) >> (16 - bits))
    return bytes(imagecodecs.jpegxl_encode(wide, lossless=True, bitspersample=bits))


def _srational(matrix: tuple[tuple[float, float, float], ...]) -> tuple[int, ...]:
    return tuple(v for row in matrix for x in row for v in (round(x * 10000), 10000))


def dng(
    rgb: NDArray[np.uint8],
    orientation: int = 1,
    preview: NDArray[np.uint8] | None = None,
    default_scale: tuple[int, int] | None = None,
) -> bytes:
    """A DNG with an RGGB CFA of the (linearised) image, 12 bits, written by tifffile; with ``preview``,
    IFD0 holds that JPEG preview and the raw sits in a SubIFD, as cameras write them. ``default_scale``
    (x, y) is the DefaultScale tag, by which LibRaw stretches its output (its pixel aspect, x / y)."""
    import tifffile

    lin = (rgb.astype(np.float32) / 255.0) ** 2.2 * 4000.0
    h, w = rgb.shape[:2]
    cfa = np.zeros((h, w), np.uint16)
    cfa[0::2, 0::2] = lin[0::2, 0::2, 0]
    cfa[0::2, 1::2] = lin[0::2, 1::2, 1]
    cfa[1::2, 0::2] = lin[1::2, 0::2, 1]
    cfa[1::2, 1::2] = lin[1::2, 1::2, 2]
    ifd0 = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "clipsearch test camera", True),  # UniqueCameraModel
        (50721, "2i", 9, _srational(_XYZ_TO_SRGB), True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        (274, "H", 1, orientation, True),
        (271, "s", 0, "Clipsearch", True),
        (272, "s", 0, "Test DNG", True),
    ]
    raw_tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50717, "I", 1, 4095, True),  # WhiteLevel
    ]
    if default_scale is not None:
        raw_tags.append((50718, "2I", 2, (default_scale[0], 1, default_scale[1], 1), True))  # DefaultScale
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        if preview is None:
            tw.write(cfa, photometric=32803, subfiletype=0, extratags=ifd0 + raw_tags)
        else:
            tw.write(
                preview,
                photometric="rgb",
                subfiletype=1,
                compression="jpeg",
                rowsperstrip=preview.shape[0],  # one JPEG stream, as cameras write it
                subifds=1,
                extratags=ifd0,
            )
            tw.write(cfa, photometric=32803, subfiletype=0, extratags=raw_tags)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ hostile files
def heif_bomb(data: bytes, width: int = 9000, height: int = 9000) -> bytes:
    """A HEIF/AVIF whose every ispe claims width x height (the pixels stay small)."""
    out = bytearray(data)
    pos = out.find(b"ispe")
    assert pos > 0
    while pos > 0:
        out[pos + 8 : pos + 16] = struct.pack(">II", width, height)
        pos = out.find(b"ispe", pos + 4)
    return bytes(out)


def jxl_bomb(width: int = 9000, height: int = 9000) -> bytes:
    """A bare JPEG XL codestream whose SizeHeader claims width x height, then garbage."""
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> i) & 1 for i in range(n))

    put(0, 1)  # not small
    put(3, 2)  # 30-bit height
    put(height - 1, 30)
    put(0, 3)  # explicit width
    put(3, 2)
    put(width - 1, 30)
    bits.extend([0] * (-len(bits) % 8))
    body = bytes(sum(bits[i + j] << j for j in range(8)) for i in range(0, len(bits), 8))
    return b"\xff\x0a" + body + bytes(range(256)) * 8


def dng_bomb(data: bytes, width: int = 9000, height: int = 9000) -> bytes:
    """A DNG (no preview) whose ImageWidth/ImageLength claim width x height."""
    out = bytearray(data)
    (ifd,) = struct.unpack("<I", out[4:8])
    (count,) = struct.unpack("<H", out[ifd : ifd + 2])
    for i in range(count):
        off = ifd + 2 + 12 * i
        tag, typ = struct.unpack("<HH", out[off : off + 4])
        if tag in (256, 257):
            fmt = "<I" if typ == 4 else "<H"
            out[off + 8 : off + 8 + struct.calcsize(fmt)] = struct.pack(fmt, width if tag == 256 else height)
    return bytes(out)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]
