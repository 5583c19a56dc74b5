"""What every format's reader shares: the one sniffer (magic bytes -> format) and the one error for
bytes that a format's reader cannot take (`corrupt`)."""

from __future__ import annotations

from typing import Final

from indexer.errors import InvalidInput

HEIF_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
JXL_CONTAINER: Final = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
TIFF_MAGIC: Final = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def corrupt(fmt: str, why: str = "") -> InvalidInput:
    """The error for bytes of ``fmt`` that its reader cannot take (truncated, or not as the format says)."""
    msg = f"truncated or corrupt {fmt.upper()}"
    return InvalidInput(msg + (f" ({why})" if why else ""), {"reason": "corrupt", "format": fmt})


def sniff_format(data: bytes) -> str | None:
    """The format named by the magic bytes (the first 16 are enough), or None. DNG, NEF and ARW look like
    TIFF here, and HEIC may turn out to be AVIF: only the whole header (`read_header`) tells."""
    # camera RAW that the first bytes tell apart from TIFF
    if data[:4] == b"II*\x00" and data[8:10] == b"CR":
        return "cr2"
    if data[4:12] == b"ftypcrx ":
        return "cr3"
    if data[:15] == b"FUJIFILMCCD-RAW":
        return "raf"
    if data[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "orf"
    # HEIF family and JPEG XL
    if data[:2] == b"\xff\x0a" or data[:12] == JXL_CONTAINER:
        return "jxl"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in AVIF_BRANDS:
            return "avif"
        if brand in HEIF_BRANDS:
            return "heic"
    # what OpenCV decodes
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":  # callers may pass only the first 16 bytes; the header parse checks the rest
        return "bmp"
    if data[:4] in TIFF_MAGIC:
        return "tiff"
    return None
