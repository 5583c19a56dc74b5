"""Parity of every decode path, reduced decodes included, against open_clip's eval transform.

Shared by tests/unit/test_decode_parity.py (tiny model, a few sizes) and benchmarks/parity.py (the full
table, tiny model and a random ViT-B/32). open_clip itself is not installed in the dev environment; its
transform is reproduced with PIL exactly as open_clip builds it (``pil_transform``: torchvision's
Resize(shortest side, bicubic, antialias) and CenterCrop on a PIL image, then ToTensor and Normalize).
benchmarks/parity_open_clip.py compares it with open_clip 3.3's own on every case here: identical inputs.

The content is natural: the photos the repository ships (tests/fixtures/images) brought to each size
(see ``photo``), then encoded in each format. The reference decodes each file at full resolution the way
PIL does (pillow-heif for HEIC, and imagecodecs for JPEG XL, which PIL does not read); the service decodes
it through ``decode_image(min_side=...)``, with every shortcut it takes (libjpeg's DCT scaling, area
reduction of the formats that decode only in full, a RAW's embedded preview). There is no thumbnail-first
path to the model: thumbnails are made from the decode, never decoded for it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from indexer.media.decode import DecodedImage, decode_image
from indexer.model.preprocess import PreprocessConfig, preprocess
from tests import formatgen as g
from tests.unit.clip_helpers import IMAGES
from tests.unit.test_preprocess import pil_transform

FORMATS = ("jpeg", "png", "webp", "tiff", "heic", "avif", "jxl", "dng-preview")
MAX_PIXELS = 64_000_000


def photo(name: str, short: int) -> NDArray[np.uint8]:
    """A shipped photo at the given shorter side, aspect kept: downscaled (Lanczos) where it is larger,
    else tiled at its own resolution by mirroring, so that it keeps a photo's detail at the pixel level at
    every size (an upscaled photo is smooth, and hides resampling errors)."""
    img = Image.open(IMAGES / name).convert("RGB")
    w, h = img.size
    size = (round(short * w / h), short) if w >= h else (short, round(short * h / w))
    if short <= min(w, h):
        return np.asarray(img.resize(size, Image.Resampling.LANCZOS))
    pixels = np.asarray(img)
    tiled = np.pad(pixels, ((0, max(0, size[1] - h)), (0, max(0, size[0] - w)), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(tiled[: size[1], : size[0]])


def sizes(cfg: PreprocessConfig, min_side: int, upto: int = 8) -> list[int]:
    """Shorter sides from 1x to ``upto``x the model input, in steps of half the input, plus each side where
    a reduction starts (k * min_side for k = 2, 4, 8), the side just below it, and an odd side above it
    (683 for ViT-B/32: the 1024x683 photos of issue 26)."""
    side = max(cfg.size)
    steps = set(range(side, upto * side + 1, side // 2))
    for k in (2, 4, 8):
        steps |= {k * min_side - 1, k * min_side, k * min_side + 11}
    return sorted(s for s in steps if s <= upto * side)


def _save(rgb: NDArray[np.uint8], fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **params)
    return buf.getvalue()


def _dng_with_preview(rgb: NDArray[np.uint8]) -> bytes:
    """A camera's way: the sensor image, and a JPEG preview of it at about 0.4 of its size (a ratio that no
    DCT or area factor matches; its shorter side is at least 336 only from 840 px of sensor up)."""
    h, w = rgb.shape[:2]
    small = Image.fromarray(rgb).resize((round(w * 0.4), round(h * 0.4)), Image.Resampling.LANCZOS)
    return g.dng(rgb, preview=np.asarray(small))


def _heic(rgb: NDArray[np.uint8]) -> bytes:
    """x265's ultrafast preset: about 8x faster than its default on a 2 MP photo, the file as large."""
    import pillow_heif

    heif = pillow_heif.from_bytes(mode="RGB", size=(rgb.shape[1], rgb.shape[0]), data=rgb.tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=90, enc_params={"preset": "ultrafast"})
    return buf.getvalue()


ENCODERS: dict[str, Callable[[NDArray[np.uint8]], bytes]] = {
    "jpeg": lambda rgb: _save(rgb, "JPEG", quality=92),
    "png": lambda rgb: _save(rgb, "PNG", compress_level=1),
    "webp": lambda rgb: _save(rgb, "WEBP", quality=90),
    "tiff": lambda rgb: _save(rgb, "TIFF"),
    "heic": _heic,
    "avif": lambda rgb: _save(rgb, "AVIF", quality=90, speed=10),
    "jxl": lambda rgb: g.jxl(rgb, distance=1.0),
    "dng-preview": _dng_with_preview,
}


def reference_pixels(
    data: bytes, fmt: str, rgb: NDArray[np.uint8], decoded: DecodedImage
) -> NDArray[np.uint8]:
    """The full-resolution decode that the reference transform starts from. A RAW has no PIL decoder: its
    reference is its full-resolution rendering: the image its preview was made from where the service
    took the preview, else LibRaw's demosaic (which the service then took at full resolution too)."""
    if fmt == "dng-preview":
        return rgb if decoded.step is not None else decoded.pixels
    if fmt == "jxl":
        import imagecodecs

        return np.asarray(imagecodecs.jpegxl_decode(data), dtype=np.uint8)[:, :, :3]
    if fmt == "heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@dataclass(frozen=True)
class Case:
    photo: str
    format: str
    width: int
    height: int
    reduction: int  # what the service's decode did: 1 (full), 2, 4, 8 (or about that for a preview)
    preview: bool
    ours: NDArray[np.float32]  # the model input, through the service's decode
    before: NDArray[np.float32]  # the same decode preprocessed from its own pixel size (before issue 26)
    reference: NDArray[np.float32]  # the model input, through the PIL transform of the full decode
    data: bytes  # the encoded file
    full: NDArray[np.uint8]  # the full-resolution pixels that the reference transform starts from


def _normalised(pixels: NDArray[np.uint8], cfg: PreprocessConfig) -> NDArray[np.float32]:
    mean = np.asarray(cfg.mean, np.float32)
    std = np.asarray(cfg.std, np.float32)
    out = ((pixels.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)
    return np.ascontiguousarray(out, dtype=np.float32)


def case(name: str, fmt: str, short: int, cfg: PreprocessConfig, min_side: int) -> Case:
    rgb = photo(name, short)
    data = ENCODERS[fmt](rgb)
    decoded = decode_image(data, MAX_PIXELS, min_side=min_side)
    ours = np.empty((3, *cfg.size), np.float32)
    preprocess(decoded.pixels, cfg, ours, source=decoded)
    before = preprocess(decoded.pixels, cfg)
    full = reference_pixels(data, fmt, rgb, decoded)
    reference = _normalised(pil_transform(full, cfg), cfg)
    preview = fmt == "dng-preview" and decoded.step is not None
    return Case(
        name,
        fmt,
        decoded.width,
        decoded.height,
        decoded.reduction,
        preview,
        ours,
        before,
        reference,
        data,
        full,
    )


def cosines(
    cases: list[Case], encode: Callable[[NDArray[np.float32]], NDArray[np.float32]], before: bool = False
) -> list[float]:
    """Image cosine of each case's input (``before``: as preprocessed before issue 26) and its reference
    through one image tower (L2-normalised outputs)."""
    ours = encode(np.stack([c.before if before else c.ours for c in cases]))
    refs = encode(np.stack([c.reference for c in cases]))
    return [float(a @ b) for a, b in zip(ours, refs, strict=True)]
