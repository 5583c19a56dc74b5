"""The pixel budget (MAX_IMAGE_PIXELS): one refusal, whichever size is checked against it.

Sizes are checked as the decoder will produce them, before it allocates: the header's dimensions
(indexer.media.decode), what the decoding library itself reports after parsing (Pillow's ``size`` of an
AVIF sequence's track, libheif's image handle, LibRaw's output size after its pixel-aspect stretch), and
the buffers the decoder sets up (a TIFF's tiles and strips).
"""

from __future__ import annotations

from indexer.errors import PayloadTooLarge


def check_size(fmt: str, width: int, height: int, max_pixels: int, *, what: str = "image") -> None:
    """PayloadTooLarge (reason ``too_many_pixels``) when ``width x height`` exceeds ``max_pixels``."""
    pixels = width * height
    if pixels > max_pixels:
        raise PayloadTooLarge(
            f"{what} is {width}x{height} = {pixels} pixels, over the limit of {max_pixels}",
            {
                "reason": "too_many_pixels",
                "format": fmt,
                "width": width,
                "height": height,
                "pixels": pixels,
                "limit": max_pixels,
            },
        )
