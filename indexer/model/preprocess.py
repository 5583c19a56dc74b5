"""CLIP image preprocessing that reproduces open_clip's PIL transform with numpy and OpenCV.

open_clip (eval): ``Resize(size, bicubic)`` of the shortest side -> ``CenterCrop(size)`` -> RGB ->
``ToTensor`` -> ``Normalize(mean, std)``. On PIL images that resize is Pillow's *antialiased* resampling:
a separable filter (bicubic a=-0.5, or triangle for bilinear) stretched by the downscale factor,
horizontal pass first, each pass rounded to uint8.

OpenCV has no such resize (INTER_CUBIC does not antialias, INTER_AREA is a box filter), so the same
filter is built here as banded weight matrices and applied with a few small matrix products, only for
the output pixels that survive the centre crop. Against Pillow on the test photos it differs by one level
on at most 0.04% of pixels (exact rounding ties: float32 sums vs Pillow's fixed point). Like Pillow's C code
(<= 12) the horizontal pass runs first; Pillow 13 picks the pass order per shape for speed, which moves
pixels by a level on some shapes (cosine of the embeddings still >= 0.99999). Cost is about that of
``cv2.resize(INTER_AREA)``.

For big JPEGs the caller may decode at reduced scale first (libjpeg's DCT scaling, see
``indexer.media.decode.decode_image(min_side=...)``): ``PreprocessConfig.min_decode_side`` keeps the decoded
shorter side at >= 1.5x the model input. On 36 photos of 460-2000 px against the full-resolution PIL
transform (tiny model): 1x gives cosine >= 0.99995, 1.5x >= 0.99998, 2x >= 0.999997; 1.5x saves ~1.3 ms per
1.4 MP JPEG over 2x (decode 2.9 vs 3.6 ms, resample 1.2 vs 1.8 ms).

Any reduced decode (that DCT scaling, the area reduction of the other formats, a RAW's preview) is
preprocessed as the full-resolution image it stands for (``source``, see ``Source``): the resize and crop
are planned from the full size, so they match the reference's to the pixel, and only the reduction's own
averaging remains, mostly taken back (see ``_bands``). Planned from the reduced pixels' own size instead,
the crop stretched by up to a model pixel (cosine 0.9990 for a 2688x1792 JPEG, tiny model; issue 26).
benchmarks/parity.py prints the table for every format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

OPENAI_MEAN: Final = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD: Final = (0.26862954, 0.26130258, 0.27577711)
# A reduced-scale JPEG decode must keep the shorter side >= this multiple of the model input size.
REDUCED_DECODE_MARGIN: Final = 1.5
_H_BLOCK: Final = 16  # output columns per weight block (horizontal pass)
_V_BLOCK: Final = 32  # output rows per weight block (vertical pass)


def _bicubic(x: NDArray[np.float64]) -> NDArray[np.float64]:
    a = -0.5  # Pillow's bicubic
    x = np.abs(x)
    return np.where(
        x < 1.0,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0),
    )


def _triangle(x: NDArray[np.float64]) -> NDArray[np.float64]:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


_FILTERS: Final[dict[str, tuple[Callable[[NDArray[np.float64]], NDArray[np.float64]], float]]] = {
    "bicubic": (_bicubic, 2.0),
    "bilinear": (_triangle, 1.0),
}


@dataclass(frozen=True)
class PreprocessConfig:
    """The model's own ``preprocess_cfg.json`` (open_clip's PreprocessCfg)."""

    size: tuple[int, int] = (224, 224)  # (height, width)
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> PreprocessConfig:
        size = cfg.get("size", 224)
        hw = (int(size), int(size)) if isinstance(size, int | float) else (int(size[0]), int(size[-1]))
        mean = tuple(float(v) for v in cfg.get("mean", OPENAI_MEAN))
        std = tuple(float(v) for v in cfg.get("std", OPENAI_STD))
        if len(mean) == 1:
            mean = mean * 3
        if len(std) == 1:
            std = std * 3
        interpolation = str(cfg.get("interpolation") or "bicubic").lower()
        resize_mode = str(cfg.get("resize_mode") or "shortest").lower()
        mode = str(cfg.get("mode", "RGB"))
        if interpolation not in _FILTERS:
            raise ValueError(f"unsupported interpolation {interpolation!r} (bicubic or bilinear)")
        if resize_mode not in ("shortest", "squash", "longest"):
            raise ValueError(f"unsupported resize_mode {resize_mode!r}")
        if mode != "RGB" or len(mean) != 3 or len(std) != 3 or min(hw) <= 0:
            raise ValueError(f"unsupported preprocess config {dict(cfg)!r}")
        return cls(
            size=hw,
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            interpolation=interpolation,
            resize_mode=resize_mode,
            fill_color=int(cfg.get("fill_color", 0)),
        )

    @classmethod
    def from_file(cls, path: Path) -> PreprocessConfig:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    @property
    def min_decode_side(self) -> int:
        """Smallest shorter side a reduced-scale decode may produce for this model."""
        return math.ceil(REDUCED_DECODE_MARGIN * max(self.size))

    @property
    def _scale_offset(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        std = np.asarray(self.std, dtype=np.float64)
        mean = np.asarray(self.mean, dtype=np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(3, 1, 1)
        offset = (mean / std).astype(np.float32).reshape(3, 1, 1)
        return scale, offset


Band = tuple[int, int, int, int, NDArray[np.float32]]  # out0, out1, in0, in1, weights


class Source(Protocol):
    """The full-resolution image that a reduced decode stands for (``indexer.images.DecodedImage`` is one):
    its size in display orientation, and how many of its pixels one decoded pixel covers along x and y
    (2, 4 or 8 for libjpeg's DCT scaling and for area averaging, where decoded pixel i covers full-resolution
    pixels [i*step, (i+1)*step), the last one partial or left out; the ratio of the sides for a preview).

    Preprocessing then plans the resize and crop from the full-resolution size, exactly as the reference
    transform does on the full decode, and samples its filter at the reduced pixels' centres: only the
    reduction's own averaging remains as a difference, never a shift or a stretch of the crop."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def pixel_step(self) -> tuple[float, float]: ...


@lru_cache(maxsize=512)
def _bands(
    in_size: int,
    out_size: int,
    first: int,
    count: int,
    interpolation: str,
    block: int,
    step: float = 1.0,
    available: int = 0,
) -> tuple[Band, ...]:
    """Pillow's resampling coefficients for outputs [first, first+count) of an in_size -> out_size resize,
    grouped into dense blocks of ``block`` outputs (each block spans only the inputs it reads).

    The pixels at hand may be a reduced decode of the in_size ones: ``available`` pixels (0: in_size), each
    standing for ``step`` full-resolution pixels. The geometry stays the full-resolution one, and the filter
    is sampled at the centres of the reduced pixels (step 1 is Pillow's own arithmetic, to the bit). After
    a whole-factor reduction (DCT scaling, area averaging) a reduced pixel is (about) the mean of the
    ``step`` pixels it covers, which blurs: the box's variance, (1 - 1/step**2)/12 in reduced pixels, is
    taken back by a three-tap sharpening [-e, 1 + 2e, -e] folded into the weights (e = that variance / 2).
    On the parity photos it halves 1 - cosine against the full-resolution resize (tiny model, worst over
    1.5-8x the input: 2.0e-5 -> 1.2e-5). A RAW preview (any other step) was made by the camera's own
    filter, which is no box: its pixels are taken as they are.

    Vectorised over the outputs: a new image size costs about 0.1 ms here, where a loop over the outputs
    cost about 6 ms (every photo of a collection with mixed sizes misses the cache)."""
    kernel, support = _FILTERS[interpolation]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support *= filterscale
    center = (np.arange(first, first + count, dtype=np.float64) + 0.5) * scale
    # Pillow: xmin = max((int)(center - support + 0.5), 0); truncation equals floor wherever it matters
    size = available or in_size
    sharpen = (1.0 - 1.0 / step**2) / 24.0 if step > 1.0 and float(step).is_integer() else 0.0
    reach = 1 if sharpen else 0  # the sharpening's taps widen the window by one reduced pixel a side
    xmin = np.maximum(np.floor((center - support) / step + 0.5) - reach, 0).astype(np.int64)
    xmax = np.minimum(np.floor((center + support) / step + 0.5).astype(np.int64) + reach, size)
    taps = max(1, int((xmax - xmin).max()))
    x = xmin[:, None] + np.arange(taps)
    inside = x < xmax[:, None]
    w = kernel((x * step - center[:, None] + 0.5 * step) / filterscale)
    if sharpen:
        near = kernel((x * step - center[:, None] - 0.5 * step) / filterscale)
        far = kernel((x * step - center[:, None] + 1.5 * step) / filterscale)
        w = (1.0 + 2.0 * sharpen) * w - sharpen * (near + far)
    w = np.where(inside, w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=w.copy(), where=total != 0.0)
    # Every output's weights in one dense matrix, written at once; each block is then a copy of its own
    # window (xmin and xmax never decrease with the output, so a block spans xmin[b0] to xmax[b1 - 1]).
    dense = np.zeros((count, size), dtype=np.float32)
    dense[np.nonzero(inside)[0], x[inside]] = w[inside]
    bands: list[Band] = []
    for b0 in range(0, count, block):
        b1 = min(count, b0 + block)
        i0, i1 = int(xmin[b0]), int(xmax[b1 - 1])
        bands.append((b0, b1, i0, i1, dense[b0:b1, i0:i1].copy()))
    return tuple(bands)


def resample(
    rgb: NDArray[np.uint8],
    new_size: tuple[int, int],
    box: tuple[int, int, int, int],
    interpolation: str = "bicubic",
    source: Source | None = None,
) -> NDArray[np.float32]:
    """Pillow-exact antialiased resize of ``rgb`` (H, W, 3) to ``new_size`` (width, height), computing only
    the output window ``box`` = (left, top, width, height). Returns planar (3, height, width) float32
    holding integral values 0..255 (Pillow's uint8 result). ``source``: ``rgb`` is a reduced decode of an
    image of that size, resized as that image would be (see ``Source``)."""
    h, w = rgb.shape[:2]
    new_w, new_h = new_size
    left, top, out_w, out_h = box
    full_w, full_h, (step_x, step_y) = (w, h, (1.0, 1.0))
    if source is not None:
        full_w, full_h, (step_x, step_y) = source.width, source.height, source.pixel_step
    bx = _bands(full_w, new_w, left, out_w, interpolation, _H_BLOCK, step_x, w)
    by = _bands(full_h, new_h, top, out_h, interpolation, _V_BLOCK, step_y, h)
    r0 = min(b[2] for b in by)
    r1 = max(b[3] for b in by)
    rows = r1 - r0
    # planar float32 copy of only the rows the vertical pass reads
    src = np.empty((3, rows, w), dtype=np.float32)
    for c, plane in enumerate(cv2.split(np.ascontiguousarray(rgb[r0:r1]))):
        src[c] = plane
    flat = src.reshape(3 * rows, w)
    tmp = np.empty((3 * rows, out_w), dtype=np.float32)
    for o0, o1, i0, i1, weights in bx:
        np.matmul(flat[:, i0:i1], weights.T, out=tmp[:, o0:o1])
    np.rint(tmp, out=tmp)
    np.clip(tmp, 0.0, 255.0, out=tmp)
    planes = tmp.reshape(3, rows, out_w)
    out = np.empty((3, out_h, out_w), dtype=np.float32)
    for o0, o1, i0, i1, weights in by:
        np.matmul(weights, planes[:, i0 - r0 : i1 - r0], out=out[:, o0:o1])
    np.rint(out, out=out)
    np.clip(out, 0.0, 255.0, out=out)
    return out


def plan_resize(
    width: int, height: int, cfg: PreprocessConfig
) -> tuple[tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    """(resized width, height), the window of it to compute (left, top, w, h), and where that window lands
    in the output (x, y), following open_clip / torchvision exactly."""
    target_h, target_w = cfg.size
    if cfg.resize_mode == "squash":
        return (target_w, target_h), (0, 0, target_w, target_h), (0, 0)
    if cfg.resize_mode == "shortest":
        if target_h == target_w:  # torchvision Resize(int): short side -> size, long side truncated
            size = target_h
            if width <= height:
                new_w, new_h = size, int(size * height / width)
            else:
                new_w, new_h = int(size * width / height), size
        else:  # open_clip ResizeKeepRatio(longest=0)
            ratio = min(height / target_h, width / target_w)
            new_w, new_h = round(width / ratio), round(height / ratio)
    else:  # longest: ResizeKeepRatio(longest=1) then CenterCropOrPad
        ratio = max(height / target_h, width / target_w)
        new_w, new_h = round(width / ratio), round(height / ratio)
    # CenterCrop(OrPad): pad first when smaller, then crop with torchvision's rounding
    pad_l = (target_w - new_w) // 2 if target_w > new_w else 0
    pad_t = (target_h - new_h) // 2 if target_h > new_h else 0
    padded_w = max(new_w, target_w)
    padded_h = max(new_h, target_h)
    crop_l = round((padded_w - target_w) / 2.0)  # torchvision: int(round(x)), half to even
    crop_t = round((padded_h - target_h) / 2.0)
    # window in resized-image coordinates, and its position in the output
    x0 = crop_l - pad_l
    y0 = crop_t - pad_t
    left, top = max(x0, 0), max(y0, 0)
    out_w = min(new_w, x0 + target_w) - left
    out_h = min(new_h, y0 + target_h) - top
    return (new_w, new_h), (left, top, out_w, out_h), (left - x0, top - y0)


def preprocess(
    rgb: NDArray[np.uint8],
    cfg: PreprocessConfig,
    out: NDArray[np.float32] | None = None,
    source: Source | None = None,
) -> NDArray[np.float32]:
    """RGB uint8 (H, W, 3) -> normalised float32 (3, H', W') model input; written into ``out`` if given
    (for example a slot of a batch array). ``source``: ``rgb`` is a reduced decode of an image of that
    size, preprocessed as that full-resolution image would be (see ``Source``)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got shape {rgb.shape} dtype {rgb.dtype}")
    target_h, target_w = cfg.size
    if out is None:
        out = np.empty((3, target_h, target_w), dtype=np.float32)
    height, width = rgb.shape[:2]
    if source is not None:
        width, height = source.width, source.height
    new_size, box, (dx, dy) = plan_resize(width, height, cfg)
    pixels = resample(rgb, new_size, box, cfg.interpolation, source)
    scale, offset = cfg._scale_offset
    if (dx, dy, box[2], box[3]) == (0, 0, target_w, target_h):
        np.multiply(pixels, scale, out=out)
        out -= offset
        return out
    out[:] = float(cfg.fill_color)  # padding (resize_mode "longest")
    out[:, dy : dy + box[3], dx : dx + box[2]] = pixels
    out *= scale
    out -= offset
    return out
