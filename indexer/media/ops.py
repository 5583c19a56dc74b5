"""What a decode of untrusted bytes does, wherever it runs: in a decode process of the pool
(indexer/media/pool_worker.py) or inline (DECODE_ISOLATION=inline). The same checks run in both.

- ``decode``: the checked RGB pixels (classify crops, class examples);
- ``prepare``: the model's input tensor written into a slot, and a thumbnail when asked: what a search by
  image, /embed/image, /compare and ingest need. Only the tensor and the thumbnail leave a decode
  process, never the full pixels (smaller, and fewer bytes through the pipe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from indexer.media import exif
from indexer.media.decode import DecodedImage, check_pixels, decode_image, make_thumbnail, read_header
from indexer.media.exif import PhotoMetadata
from indexer.media.jpeg_scans import check_scans
from indexer.model.preprocess import PreprocessConfig, preprocess


@dataclass(frozen=True)
class DecodeChecks:
    """The checks made on the bytes before a decode (the pixel cap, JPEG scan bombs)."""

    max_pixels: int
    jpeg_max_scans: int
    jpeg_max_scan_pixels: int


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` tells about an image besides its tensor."""

    format: str
    width: int
    height: int
    thumbnail: bytes = b""
    photo: PhotoMetadata | None = None  # read when asked (an ingest), from the header: no second decode


def decode(
    data: bytes, checks: DecodeChecks, *, min_side: int | None = None, exif_orientation: bool = True
) -> DecodedImage:
    header = read_header(data)
    check_pixels(header, checks.max_pixels)
    if header.format == "jpeg":
        check_scans(data, header.pixels, checks.jpeg_max_scans, checks.jpeg_max_scan_pixels)
    return decode_image(data, checks.max_pixels, min_side=min_side, exif_orientation=exif_orientation)


def prepare(
    data: bytes,
    checks: DecodeChecks,
    cfg: PreprocessConfig,
    out: NDArray[np.float32],
    *,
    min_side: int | None,
    thumbnail_size: int = 0,
    photo: bool = False,
) -> Prepared:
    """Decode, thumbnail (``thumbnail_size`` > 0), read the photo metadata (``photo``) and preprocess into
    ``out``; the pixels die on return."""
    image = decode(data, checks, min_side=min_side)
    thumbnail = make_thumbnail(image, thumbnail_size) if thumbnail_size > 0 else b""
    preprocess(image.pixels, cfg, out=out, source=image)  # a reduced decode as the full size (issue 26)
    metadata = exif.parse(data, image.format) if photo else None
    return Prepared(image.format, image.width, image.height, thumbnail, metadata)


def config_dict(cfg: PreprocessConfig) -> dict[str, object]:
    """A PreprocessConfig as the JSON that ``PreprocessConfig.from_dict`` reads back."""
    return {
        "size": list(cfg.size),
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "interpolation": cfg.interpolation,
        "resize_mode": cfg.resize_mode,
        "fill_color": cfg.fill_color,
    }
