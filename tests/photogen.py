"""Photos with real EXIF (IFD0, Exif IFD, GPS IFD) written by Pillow into JPEG, TIFF, WebP, PNG and AVIF,
and by pillow-heif into HEIC: the fixtures of the photo-metadata tests."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from tests.formatgen import scene

# Known places (GeoNames' own coordinates, rounded): the reverse geocoder must name these cities.
PARIS = (48.8566, 2.3522)
TOKYO = (35.6895, 139.6917)
SYDNEY = (-33.8688, 151.2093)
NEW_YORK = (40.7128, -74.0060)
REYKJAVIK = (64.1466, -21.9426)


@dataclass(frozen=True)
class Shot:
    taken: str | None = "2019:06:01 12:30:00"  # EXIF DateTimeOriginal, camera wall-clock time
    offset: str | None = "+02:00"  # OffsetTimeOriginal
    make: str = "Canon"
    model: str = "Canon EOS R5"
    lens: str = "RF24-105mm F4 L IS USM"
    focal: float = 50.0
    exposure: Fraction = Fraction(1, 250)
    iso: int = 200
    gps: tuple[float, float] | None = PARIS
    altitude: float | None = 35.5


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 4)
    return (IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(int(seconds * 10000), 10000))


def exif_of(shot: Shot) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = shot.make
    exif[0x0110] = shot.model
    sub = exif.get_ifd(0x8769)
    if shot.taken is not None:
        sub[0x9003] = shot.taken
        if shot.offset is not None:
            sub[0x9011] = shot.offset
    sub[0xA434] = shot.lens
    sub[0x920A] = IFDRational(int(shot.focal * 10), 10)
    sub[0x829A] = IFDRational(shot.exposure.numerator, shot.exposure.denominator)
    sub[0x8827] = shot.iso
    if shot.gps is not None:
        gps = exif.get_ifd(0x8825)
        lat, lon = shot.gps
        gps[1] = "N" if lat >= 0 else "S"
        gps[2] = _dms(lat)
        gps[3] = "E" if lon >= 0 else "W"
        gps[4] = _dms(lon)
        if shot.altitude is not None:
            gps[5] = b"\x00" if shot.altitude >= 0 else b"\x01"
            gps[6] = IFDRational(int(abs(shot.altitude) * 10), 10)
    return exif


def photo(shot: Shot, fmt: str = "jpeg", seed: int = 0, size: tuple[int, int] = (160, 120)) -> bytes:
    """An image of `fmt` (jpeg, tiff, webp, png, avif, heic) carrying the shot's EXIF."""
    rgb = scene(size[0], size[1], seed)
    exif = exif_of(shot).tobytes()
    buf = io.BytesIO()
    if fmt == "heic":
        import pillow_heif

        pillow_heif.from_pillow(Image.fromarray(rgb)).save(buf, quality=85, exif=exif)
    else:
        Image.fromarray(rgb).save(buf, fmt.upper(), exif=exif)
    return buf.getvalue()


def plain(fmt: str = "jpeg", seed: int = 0) -> bytes:
    """An image without any metadata."""
    buf = io.BytesIO()
    Image.fromarray(scene(160, 120, seed)).save(buf, fmt.upper())
    return buf.getvalue()
