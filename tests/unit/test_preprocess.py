"""Preprocessing reproduces open_clip's PIL transform (Pillow's antialiased resize, torchvision's crop).

Pillow resizes in two passes, each rounded to uint8. Its C code (and Pillow <= 12) always runs the
horizontal pass first, as ``indexer.model.preprocess`` does; Pillow 13 picks the order per shape for speed,
which moves some pixels by one level (two at most) on the shapes where it goes vertical first. On the
fixture photos the result is identical but for rounding ties.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.media.decode import decode_image
from indexer.model.preprocess import (
    OPENAI_MEAN,
    OPENAI_STD,
    PreprocessConfig,
    plan_resize,
    preprocess,
    resample,
)

IMAGES = Path(__file__).resolve().parents[1] / "fixtures" / "images"
PHOTOS = ["astronaut.jpg", "coffee.jpg", "chelsea.jpg", "rocket.jpg", "hubble.jpg", "retina.jpg"]
PIL_FILTER = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def pil_transform(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """open_clip's eval transform on a PIL image, as uint8 HxWx3 (before ToTensor/Normalize)."""
    img = Image.fromarray(rgb)
    th, tw = cfg.size
    w, h = img.size
    resample_filter = PIL_FILTER[cfg.interpolation]
    if cfg.resize_mode == "squash":
        return np.asarray(img.resize((tw, th), resample_filter))
    if cfg.resize_mode == "shortest" and th == tw:  # torchvision Resize(int)
        nw, nh = (th, int(th * h / w)) if w <= h else (int(th * w / h), th)
    else:  # ResizeKeepRatio
        ratio = max(h / th, w / tw) if cfg.resize_mode == "longest" else min(h / th, w / tw)
        nw, nh = round(w / ratio), round(h / ratio)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), resample_filter)
    if tw > nw or th > nh:  # CenterCropOrPad: pad
        canvas = Image.new("RGB", (max(nw, tw), max(nh, th)), (cfg.fill_color,) * 3)
        canvas.paste(img, ((tw - nw) // 2 if tw > nw else 0, (th - nh) // 2 if th > nh else 0))
        img = canvas
    w, h = img.size
    top, left = round((h - th) / 2.0), round((w - tw) / 2.0)
    return np.asarray(img.crop((left, top, left + tw, top + th)))


def ours_uint8(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    x = preprocess(rgb, cfg)
    std = np.asarray(cfg.std, dtype=np.float32)[:, None, None]
    mean = np.asarray(cfg.mean, dtype=np.float32)[:, None, None]
    return np.rint((x * std + mean) * 255).astype(np.int16).transpose(1, 2, 0)


def smooth_image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    coarse = rng.integers(0, 256, size=(max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR)).astype(np.int16)
    return np.clip(img + rng.integers(-20, 21, size=img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", PHOTOS)
def test_identical_to_pillow_on_photos(name: str) -> None:
    rgb = decode_image((IMAGES / name).read_bytes(), 10**9).pixels
    cfg = PreprocessConfig()
    diff = np.abs(ours_uint8(rgb, cfg) - pil_transform(rgb, cfg).astype(np.int16))
    assert diff.max() <= 1  # float32 sums vs Pillow's 22-bit fixed point: exact ties may round apart
    assert (diff > 0).mean() < 1e-3


@pytest.mark.parametrize(
    ("w", "h"),
    [(1, 1), (7, 10), (100, 60), (224, 224), (225, 224), (224, 300), (300, 2000), (2000, 301), (1999, 1333)],
)
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_matches_pillow_on_odd_sizes(w: int, h: int, interpolation: str) -> None:
    rgb = smooth_image(np.random.default_rng(w * 7919 + h), w, h)
    cfg = PreprocessConfig(interpolation=interpolation)
    diff = np.abs(ours_uint8(rgb, cfg) - pil_transform(rgb, cfg).astype(np.int16))
    assert diff.max() <= 2  # pass order (see the module docstring)
    assert diff.mean() < 0.3


@pytest.mark.parametrize("mode", ["squash", "longest"])
@pytest.mark.parametrize(("w", "h"), [(640, 480), (300, 900), (100, 100), (50, 20)])
def test_other_resize_modes(mode: str, w: int, h: int) -> None:
    rgb = smooth_image(np.random.default_rng(w + h), w, h)
    cfg = PreprocessConfig(resize_mode=mode, fill_color=0)
    diff = np.abs(ours_uint8(rgb, cfg) - pil_transform(rgb, cfg).astype(np.int16))
    assert diff.max() <= 2 and diff.mean() < 0.3


def test_non_square_target() -> None:
    rgb = smooth_image(np.random.default_rng(3), 640, 480)
    cfg = PreprocessConfig(size=(192, 256))
    out = preprocess(rgb, cfg)
    assert out.shape == (3, 192, 256)
    assert np.abs(ours_uint8(rgb, cfg) - pil_transform(rgb, cfg).astype(np.int16)).max() <= 2


def test_normalisation_uses_the_models_mean_and_std() -> None:
    rgb = np.full((300, 400, 3), (10, 128, 250), dtype=np.uint8)
    cfg = PreprocessConfig(mean=(0.5, 0.25, 0.0), std=(0.5, 0.5, 1.0))
    out = preprocess(rgb, cfg)
    expect = (np.array([10, 128, 250]) / 255 - np.array([0.5, 0.25, 0.0])) / np.array([0.5, 0.5, 1.0])
    np.testing.assert_allclose(out.mean(axis=(1, 2)), expect, atol=1e-6)
    default = PreprocessConfig()
    assert default.mean == OPENAI_MEAN and default.std == OPENAI_STD


def test_writes_into_a_batch_slot() -> None:
    rgb = smooth_image(np.random.default_rng(1), 320, 240)
    batch = np.zeros((2, 3, 224, 224), dtype=np.float32)
    preprocess(rgb, PreprocessConfig(), out=batch[1])
    np.testing.assert_array_equal(batch[1], preprocess(rgb, PreprocessConfig()))
    assert not batch[0].any()


def test_only_the_crop_window_is_computed() -> None:
    new_size, box, offset = plan_resize(4000, 3000, PreprocessConfig())
    assert new_size == (298, 224) and box == (37, 0, 224, 224) and offset == (0, 0)
    pixels = resample(np.zeros((3000, 4000, 3), np.uint8), new_size, box)
    assert pixels.shape == (3, 224, 224)


def test_config_parsing() -> None:
    cfg = PreprocessConfig.from_dict(
        {"size": 336, "mean": [0.5], "std": [0.5], "interpolation": "BILINEAR", "resize_mode": "squash"}
    )
    assert cfg.size == (336, 336) and cfg.mean == (0.5, 0.5, 0.5) and cfg.interpolation == "bilinear"
    assert cfg.min_decode_side == 504
    assert PreprocessConfig.from_dict({}).size == (224, 224)
    for bad in ({"interpolation": "lanczos"}, {"resize_mode": "fill"}, {"mode": "L"}, {"size": 0}):
        with pytest.raises(ValueError):
            PreprocessConfig.from_dict(bad)


def test_rejects_non_rgb_arrays() -> None:
    with pytest.raises(ValueError):
        preprocess(np.zeros((10, 10), np.uint8), PreprocessConfig())
    with pytest.raises(ValueError):
        preprocess(np.zeros((10, 10, 3), np.float32), PreprocessConfig())
