"""Photo metadata from the EXIF (and XMP) of an image's bytes: when it was taken, with which camera, where.

Header-level only: nothing here decodes pixels. Readers, by format:

- JPEG, WebP, TIFF (and the TIFF-based RAWs: DNG, CR2, NEF, ARW, PEF), AVIF, PNG: Pillow opens the file
  lazily and hands over the EXIF block it found while parsing the header (``info["exif"]``, or the TIFF's
  own IFDs). A PNG's ``eXIf`` chunk counts only when it comes before the pixel data (where the PNG spec
  puts it): asking Pillow for a later one would decode the whole image.
- HEIC/HEIF: ``pi_heif`` reads the container's metadata items (the service's HEIF decoder, decode-only).
- The other RAWs (CR3, RAF, ORF, ...): ``exifread``, a pure-Python reader of the TIFF/EXIF structures.

``parse(data, fmt)`` never raises: a file with broken or no metadata gives an empty ``PhotoMetadata``.
Times: ``DateTimeOriginal`` (else ``DateTimeDigitized``, else IFD0 ``DateTime``, else XMP's
``exif:DateTimeOriginal`` / ``xmp:CreateDate`` / ``photoshop:DateCreated``) with ``OffsetTimeOriginal``
(or the XMP date's own offset) when the camera recorded one. Without an offset the time is the camera's
local wall-clock time: it is kept as if it were UTC and flagged ``local`` (there is no zone to convert
from), so a date filter compares wall-clock times for such photos.
"""

from __future__ import annotations

import io
import logging
import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from indexer.errors import InvalidInput

log = logging.getLogger(__name__)

EXIF_IFD: Final = 0x8769
GPS_IFD: Final = 0x8825
# IFD0
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
# Exif IFD
_EXPOSURE, _ISO, _ORIGINAL, _DIGITIZED = 0x829A, 0x8827, 0x9003, 0x9004
_OFFSET, _OFFSET_ORIGINAL, _OFFSET_DIGITIZED = 0x9010, 0x9011, 0x9012
_FOCAL, _LENS_MAKE, _LENS_MODEL = 0x920A, 0xA433, 0xA434
# GPS IFD
_LAT_REF, _LAT, _LON_REF, _LON, _ALT_REF, _ALT = 1, 2, 3, 4, 5, 6

_PILLOW_FORMATS: Final = frozenset({"jpeg", "webp", "tiff", "png", "avif", "dng", "cr2", "nef", "arw", "raw"})
_HEIF_FORMATS: Final = frozenset({"heic", "heif"})
_EXIFREAD_FORMATS: Final = frozenset({"cr3", "raf", "orf", "dng", "cr2", "nef", "arw", "raw"})
_EXIF_TIME = re.compile(r"^\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_TEXT = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")
_XMP_DATE = re.compile(
    rb"(?:exif:DateTimeOriginal|xmp:CreateDate|photoshop:DateCreated)\s*(?:=\s*\"|>)\s*"
    rb"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?)(Z|[+-]\d{2}:\d{2})?"
)
_MAX_TEXT = 200  # a camera, lens or offset string longer than this is not one


@dataclass(frozen=True)
class PhotoMetadata:
    """What a photo says about itself. `taken_at` is timezone-aware: in UTC when the photo gave its offset
    (`offset` is then "+02:00" and so on), else the local wall-clock time labelled UTC (`local`)."""

    taken_at: datetime | None = None
    offset: str = ""
    local: bool = False
    source: str = ""  # "exif", "xmp" or "mtime"; "" when there is no time
    camera_make: str = ""
    camera_model: str = ""
    lens: str = ""
    focal_length_mm: float | None = None
    exposure_s: float | None = None
    iso: float | None = None
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None

    def with_mtime(self, mtime: float | None) -> PhotoMetadata:
        """The file's modification time (a server-side folder's file) when the photo has none of its own."""
        if self.taken_at is not None or mtime is None:
            return self
        try:
            when = datetime.fromtimestamp(mtime, UTC)
        except (OverflowError, OSError, ValueError):
            return self
        return replace(self, taken_at=when, offset="+00:00", local=False, source="mtime")


EMPTY: Final = PhotoMetadata()
_CHECKED: Final = TypeAdapter(PhotoMetadata)


def to_json(meta: PhotoMetadata) -> dict[str, Any]:
    """The metadata as JSON (a decode process's reply); ``from_json`` reads it back."""
    return _CHECKED.dump_python(meta, mode="json")


def from_json(value: object) -> PhotoMetadata:
    """Metadata from a decode process's reply, checked as if it came from outside: types, finite numbers,
    short texts; InvalidInput when it is not such a record."""
    try:
        meta = _CHECKED.validate_python(value)
    except ValidationError as exc:
        raise InvalidInput(f"photo metadata: {exc.error_count()} invalid fields") from None
    numbers = (meta.focal_length_mm, meta.exposure_s, meta.iso, meta.latitude, meta.longitude, meta.altitude)
    texts = (meta.offset, meta.source, meta.camera_make, meta.camera_model, meta.lens)
    if any(n is not None and not math.isfinite(n) for n in numbers) or any(len(t) > _MAX_TEXT for t in texts):
        raise InvalidInput("photo metadata: a number out of range or a text too long")
    if meta.taken_at is not None and meta.taken_at.tzinfo is None:
        raise InvalidInput("photo metadata: a time without a zone")
    return meta


def parse(data: bytes, fmt: str) -> PhotoMetadata:
    """The metadata of an image of format `fmt` (as the decoder named it); EMPTY when it has none."""
    try:
        if fmt in _HEIF_FORMATS:
            return _from_heif(data)
        if fmt in _PILLOW_FORMATS:
            found = _from_pillow(data)
            if found is not EMPTY or fmt not in _EXIFREAD_FORMATS:
                return found
        if fmt in _EXIFREAD_FORMATS:
            return _from_exifread(data)
        return EMPTY  # GIF, BMP, JPEG XL: no EXIF that we read
    except Exception as exc:  # metadata is a bonus: a broken block never fails the image
        log.debug("no metadata from a %s image: %s: %s", fmt, exc.__class__.__name__, exc)
        return EMPTY


# -- readers ---------------------------------------------------------------------------------------------
def _from_pillow(data: bytes) -> PhotoMetadata:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        xmp = _xmp_bytes(im.info)
        if "exif" not in im.info and not hasattr(im, "tag_v2"):
            return _build({}, {}, {}, xmp)
        exif = im.getexif()
        return _build(dict(exif), _ifd(exif, EXIF_IFD), _ifd(exif, GPS_IFD), xmp)


def _from_heif(data: bytes) -> PhotoMetadata:
    import pi_heif
    from PIL import Image

    heif = pi_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    raw = heif.info.get("exif")
    xmp = heif.info.get("xmp")
    if not raw:
        return _build({}, {}, {}, xmp if isinstance(xmp, bytes) else None)
    exif = Image.Exif()
    exif.load(raw)
    xmp_bytes = xmp if isinstance(xmp, bytes) else None
    return _build(dict(exif), _ifd(exif, EXIF_IFD), _ifd(exif, GPS_IFD), xmp_bytes)


def _from_exifread(data: bytes) -> PhotoMetadata:
    import exifread

    tags = exifread.process_file(io.BytesIO(data), details=False, extract_thumbnail=False)
    ifd0: dict[int, Any] = {}
    exif_ifd: dict[int, Any] = {}
    gps: dict[int, Any] = {}
    for name, tag in tags.items():
        group, _, _ = name.partition(" ")
        values = tag.values
        value = values if isinstance(values, str) else (values[0] if len(values) == 1 else list(values))
        value = _ratio(value)
        target = {"Image": ifd0, "EXIF": exif_ifd, "GPS": gps}.get(group)
        if target is not None:
            target[int(tag.tag)] = value
    return _build(ifd0, exif_ifd, gps, None)


def _ratio(value: Any) -> Any:
    """exifread's Ratio (num/den) as a float; lists element-wise."""
    if isinstance(value, list):
        return [_ratio(v) for v in value]
    if hasattr(value, "num") and hasattr(value, "den"):
        return value.num / value.den if value.den else math.nan
    return value


def _ifd(exif: Any, tag: int) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:  # a malformed pointer: that IFD is left out
        return {}


def _xmp_bytes(info: dict[Any, Any]) -> bytes | None:
    for key in ("xmp", "XML:com.adobe.xmp"):
        value = info.get(key)
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8", "replace")
    return None


# -- fields ----------------------------------------------------------------------------------------------
def _build(
    ifd0: dict[int, Any], exif: dict[int, Any], gps: dict[int, Any], xmp: bytes | None
) -> PhotoMetadata:
    taken_at, offset, local, source = _taken_at(ifd0, exif, xmp)
    lat, lon, alt = _gps(gps)
    found = PhotoMetadata(
        taken_at=taken_at,
        offset=offset,
        local=local,
        source=source,
        camera_make=_text(ifd0.get(_MAKE)),
        camera_model=_text(ifd0.get(_MODEL)),
        lens=_lens(exif),
        focal_length_mm=_positive(exif.get(_FOCAL)),
        exposure_s=_positive(exif.get(_EXPOSURE)),
        iso=_positive(exif.get(_ISO)),
        latitude=lat,
        longitude=lon,
        altitude=alt,
    )
    return EMPTY if found == EMPTY else found


def _taken_at(
    ifd0: dict[int, Any], exif: dict[int, Any], xmp: bytes | None
) -> tuple[datetime | None, str, bool, str]:
    for time_tag, offset_tag, table in (
        (_ORIGINAL, _OFFSET_ORIGINAL, exif),
        (_DIGITIZED, _OFFSET_DIGITIZED, exif),
        (_DATETIME, _OFFSET, ifd0),
    ):
        wall = _exif_time(table.get(time_tag))
        if wall is None:
            continue
        offset = _offset(exif.get(offset_tag))
        if offset is None and time_tag != _DATETIME:
            offset = _offset(exif.get(_OFFSET))
        return _placed(wall, offset, "exif")
    if xmp:
        match = _XMP_DATE.search(xmp[:1_000_000])
        if match:
            try:
                wall = datetime.fromisoformat(match.group(1).decode())
            except ValueError:
                return None, "", False, ""
            zone = match.group(2).decode() if match.group(2) else ""
            return _placed(wall, _offset("+00:00" if zone == "Z" else zone), "xmp")
    return None, "", False, ""


def _placed(wall: datetime, offset: timedelta | None, source: str) -> tuple[datetime, str, bool, str]:
    if offset is None:
        return wall.replace(tzinfo=UTC), "", True, source
    aware = wall.replace(tzinfo=timezone(offset)).astimezone(UTC)
    return aware, _offset_text(offset), False, source


def _exif_time(value: Any) -> datetime | None:
    text = _text(value)
    match = _EXIF_TIME.match(text)
    if not match:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups())
        when = datetime(year, month, day, hour, minute, second)  # wall-clock time, placed later
    except ValueError:  # "0000:00:00 00:00:00" and the like
        return None
    return when if 1678 <= when.year <= 2261 else None  # Weaviate's int64-nanosecond dates


def _offset(value: Any) -> timedelta | None:
    match = _OFFSET_TEXT.match(_text(value))
    if not match:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        return None
    return -delta if sign == "-" else delta


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return ""
    return value.replace("\x00", "").strip()[:_MAX_TEXT]


def _lens(exif: dict[int, Any]) -> str:
    model, make = _text(exif.get(_LENS_MODEL)), _text(exif.get(_LENS_MAKE))
    if make and model and not model.lower().startswith(make.lower()):
        return f"{make} {model}"
    return model or make


def _number(value: Any) -> float | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if isinstance(value, Fraction):
        value = float(value)
    try:
        number = float(value)  # Pillow's IFDRational, int, float
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _positive(value: Any) -> float | None:
    number = _number(value)
    return round(number, 6) if number is not None and number > 0 else None


def _gps(gps: dict[int, Any]) -> tuple[float | None, float | None, float | None]:
    lat = _degrees(gps.get(_LAT), gps.get(_LAT_REF), "S", 90.0)
    lon = _degrees(gps.get(_LON), gps.get(_LON_REF), "W", 180.0)
    if lat is None or lon is None or (lat == 0.0 and lon == 0.0):  # 0,0: a receiver without a fix
        lat = lon = None
    alt = _number(gps.get(_ALT))
    if alt is not None:
        ref = gps.get(_ALT_REF)
        below = ref in (1, b"\x01") or (isinstance(ref, list) and ref[:1] == [1])
        alt = round(-alt if below else alt, 3)
    return lat, lon, alt


def _degrees(value: Any, ref: Any, negative: str, limit: float) -> float | None:
    if not isinstance(value, list | tuple) or len(value) != 3:
        return None
    parts = [_number(v) for v in value]
    if any(p is None for p in parts):
        return None
    d, m, s = (p for p in parts if p is not None)
    degrees = d + m / 60.0 + s / 3600.0
    if _text(ref).upper() == negative:
        degrees = -degrees
    return round(degrees, 7) if abs(degrees) <= limit else None
