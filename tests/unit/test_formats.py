"""HEIF/HEIC, AVIF, JPEG XL and camera RAW: sniffing, header sizes, orientation, alpha, depth, first image,
bombs and truncation, RAW preview vs demosaic, and parity with open_clip's PIL path (cosine >= 0.9999 at
full resolution, as for the formats OpenCV reads; see test_parity.py for why that threshold has teeth).

Colour differences measured here (printed with -s): pi-heif (libheif 1.23.0, libde265 1.1.0) against
pillow-heif's Pillow plugin (libheif 1.23.6, libde265 1.1.3) on the same HEIC. AVIF goes through Pillow
itself and JPEG XL through libjxl, so their reference pixels are the decoder's own."""

from __future__ import annotations

import io

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageOps

from indexer.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from indexer.media import codecs, raw
from indexer.media.decode import FORMAT_MIME, check_content_type, decode_image, read_header, sniff_format
from tests import formatgen as g
from tests.unit.clip_helpers import IMAGES, tiny_encoder
from tests.unit.test_parity import IMAGE_MIN_COS, _normalised
from tests.unit.test_preprocess import pil_transform

CAP = 64_000_000
RED = np.array([220, 30, 30])


def _red_corner(pixels: NDArray[np.uint8]) -> str:
    """Which quarter holds the red block (the scene puts it top-left before orientation)."""
    h, w = pixels.shape[:2]
    quarters = {
        "top-left": pixels[: h // 4, : w // 4],
        "top-right": pixels[: h // 4, -w // 4 :],
        "bottom-left": pixels[-h // 4 :, : w // 4],
        "bottom-right": pixels[-h // 4 :, -w // 4 :],
    }
    return min(quarters, key=lambda k: float(np.abs(quarters[k].reshape(-1, 3) - RED).mean()))


SCENE = g.scene(320, 200)
MAKERS = {
    "heic": lambda o: g.heic(SCENE, orientation=o),
    "avif": lambda o: g.avif(SCENE, orientation=o),
    "jxl": lambda o: g.jxl(SCENE, orientation=o),
    "dng": lambda o: g.dng(SCENE, orientation=o),
}


@pytest.mark.parametrize("fmt", list(MAKERS))
def test_header_then_decode_in_size_and_format(fmt: str) -> None:
    data = MAKERS[fmt](1)
    header = read_header(data)
    assert header.format == fmt
    assert (header.width, header.height) == (320, 200)
    image = decode_image(data, CAP)
    assert (image.format, image.width, image.height, image.pixels.shape) == (fmt, 320, 200, (200, 320, 3))
    assert image.pixels.dtype == np.uint8
    assert image.content_type == FORMAT_MIME[fmt]
    assert _red_corner(image.pixels) == "top-left"
    tolerance = 40 if fmt == "dng" else 6  # LibRaw renders the linear CFA with its own curve
    assert float(np.abs(image.pixels.astype(int) - SCENE).mean()) < tolerance


@pytest.mark.parametrize("fmt", list(MAKERS))
@pytest.mark.parametrize(
    ("orientation", "corner"), [(3, "bottom-right"), (6, "top-right"), (8, "bottom-left")]
)
def test_orientation_is_applied(fmt: str, orientation: int, corner: str) -> None:
    """HEIF/AVIF: irot/imir (the encoders write the EXIF orientation as those); JPEG XL: the codestream
    orientation; DNG: the Orientation tag through LibRaw's flip."""
    image = decode_image(MAKERS[fmt](orientation), CAP)
    expect = (320, 200) if orientation == 3 else (200, 320)
    assert (image.width, image.height) == expect
    assert image.pixels.shape[:2] == expect[::-1]
    assert _red_corner(image.pixels) == corner


def test_heif_exif_orientation_is_not_applied_twice() -> None:
    """The encoder writes irot AND keeps EXIF orientation 6 inside the HEIC; only irot counts."""
    data = g.heic(SCENE, orientation=6)
    assert b"irot" in data
    image = decode_image(data, CAP)
    assert _red_corner(image.pixels) == "top-right"


@pytest.mark.parametrize("fmt", ["heic", "avif", "jxl"])
def test_alpha_is_dropped_like_png(fmt: str) -> None:
    alpha = np.tile(np.linspace(0, 255, 320).astype(np.uint8), (200, 1))
    rgba = np.dstack([SCENE, alpha])
    if fmt == "heic":
        import pillow_heif

        buf = io.BytesIO()
        pillow_heif.from_pillow(Image.fromarray(rgba, "RGBA")).save(buf, quality=95)
        data = buf.getvalue()
    elif fmt == "avif":
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, "AVIF", quality=95)
        data = buf.getvalue()
    else:
        import imagecodecs

        data = bytes(imagecodecs.jpegxl_encode(rgba, lossless=True))
    image = decode_image(data, CAP)
    assert image.pixels.shape == (200, 320, 3)
    # the colour under a transparent pixel stays (no compositing on black or white), as PIL's convert("RGB")
    assert float(np.abs(image.pixels[:, :40].astype(int) - SCENE[:, :40]).mean()) < 6


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("heic 10-bit", lambda: g.heic(SCENE, bits=10)),
        ("heic 12-bit", lambda: g.heic(SCENE, bits=12)),
        ("avif 10-bit", lambda: g.avif_10bit(SCENE)),
        ("jxl 10-bit", lambda: g.jxl_deep(SCENE, 10)),
        ("jxl 12-bit", lambda: g.jxl_deep(SCENE, 12)),
        ("jxl 16-bit", lambda: g.jxl_deep(SCENE, 16)),
    ],
)
def test_deep_samples_come_to_8_bits(name: str, make: object) -> None:
    data = make()  # type: ignore[operator]
    image = decode_image(data, CAP)
    diff = np.abs(image.pixels.astype(int) - SCENE)
    print(f"{name}: mean {diff.mean():.2f}, max {diff.max()} levels from the 8-bit source")
    assert image.pixels.dtype == np.uint8
    lossless = name.startswith("jxl")
    assert diff.max() <= (1 if lossless else 64) and diff.mean() < (0.6 if lossless else 4)


def test_multi_image_heif_uses_the_first_primary_image() -> None:
    flat = [np.full((40, 56, 3), v, np.uint8) for v in (30, 128, 230)]
    data = g.heic_multi(flat)
    image = decode_image(data, CAP)
    assert image.pixels.shape == (40, 56, 3)
    assert abs(float(image.pixels.mean()) - 30) < 3


# -------------------------------------------------------------------------------------- hostile
def _no_decoders(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("decoder reached before the pixel cap")

    for name in ("_decode_heic", "_decode_avif", "_decode_jxl"):
        monkeypatch.setattr(codecs, name, refuse)
    monkeypatch.setattr(raw, "_preview", refuse)


@pytest.mark.parametrize(
    ("fmt", "bomb"),
    [
        ("heic", lambda: g.heif_bomb(g.heic(SCENE))),
        ("avif", lambda: g.heif_bomb(g.avif(SCENE))),
        ("jxl", lambda: g.jxl_bomb()),
        ("dng", lambda: g.dng_bomb(g.dng(SCENE))),
    ],
)
def test_bombs_are_refused_from_the_header(fmt: str, bomb: object, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bomb()  # type: ignore[operator]
    _no_decoders(monkeypatch)
    with pytest.raises(PayloadTooLarge) as err:
        decode_image(data, CAP)
    assert "9000x9000 = 81000000 pixels, over the limit of 64000000" in err.value.message
    assert err.value.details["reason"] == "too_many_pixels"
    assert err.value.details["format"] == fmt


@pytest.mark.parametrize("fmt", list(MAKERS))
@pytest.mark.parametrize("keep", [0.05, 0.5, 0.97])
def test_truncated_files_are_corrupt(fmt: str, keep: float) -> None:
    data = g.truncated(MAKERS[fmt](1), keep)
    with pytest.raises(InvalidInput) as err:
        decode_image(data, CAP)
    assert err.value.message.startswith(f"truncated or corrupt {fmt.upper()}"), err.value.message
    assert err.value.details == {"reason": "corrupt", "format": fmt}


def test_heif_of_another_codec_is_unsupported() -> None:
    data = bytearray(g.heic(SCENE))
    pos = data.find(b"hvc1", data.find(b"infe"))
    data[pos : pos + 4] = b"j2k1"
    with pytest.raises(UnsupportedMediaType) as err:
        read_header(bytes(data))
    assert err.value.details["reason"] == "unsupported_codec"


def test_sniffing_and_content_types() -> None:
    assert sniff_format(g.heic(SCENE)[:16]) == "heic"
    assert sniff_format(g.avif(SCENE)[:16]) == "avif"
    assert sniff_format(g.jxl(SCENE)[:16]) == "jxl"
    assert sniff_format(g.jxl(SCENE, orientation=6)[:16]) == "jxl"  # the ISOBMFF container
    assert sniff_format(g.dng(SCENE)[:16]) == "tiff"  # only the whole header tells DNG from TIFF
    assert sniff_format(b"II*\x00\x10\x00\x00\x00CR\x02\x00") == "cr2"
    assert sniff_format(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01") == "cr3"
    assert sniff_format(b"FUJIFILMCCD-RAW 0201") == "raf"
    assert sniff_format(b"IIRO\x08\x00\x00\x00") == "orf"
    plain = io.BytesIO()
    Image.fromarray(SCENE).save(plain, "TIFF")
    assert read_header(plain.getvalue()).format == "tiff"
    for ctype in (
        "image/heic",
        "image/heif",
        "image/avif",
        "image/jxl",
        "image/x-adobe-dng",
        "image/x-nikon-nef",
    ):
        check_content_type(ctype)


# --------------------------------------------------------------------------------- RAW preview
def test_raw_uses_a_large_enough_preview_and_turns_it() -> None:
    preview = g.scene(320, 200, seed=5)  # not the raw scene: tells which one was decoded
    data = g.dng(SCENE, orientation=6, preview=preview)
    image = decode_image(data, CAP, min_side=150)
    assert (image.width, image.height) == (200, 320)
    assert image.pixels.shape == (320, 200, 3)  # the preview, turned like the RAW
    turned = np.rot90(preview, k=-1)
    assert float(np.abs(image.pixels.astype(int) - turned).mean()) < 6
    # too small for the model, or full resolution asked with a smaller preview: LibRaw demosaics
    small = g.dng(SCENE, orientation=6, preview=g.scene(160, 100, seed=5))
    for data, side in ((small, 150), (small, None)):
        image = decode_image(data, CAP, min_side=side)
        assert image.pixels.shape == (320, 200, 3)
        assert _red_corner(image.pixels) == "top-right"
        assert float(np.abs(image.pixels.astype(int) - np.rot90(SCENE, k=-1)).mean()) < 40


def test_tiff_raw_kinds() -> None:
    assert raw.tiff_raw_kind(g.dng(SCENE)) == "dng"
    buf = io.BytesIO()
    Image.fromarray(SCENE).save(buf, "TIFF")
    assert raw.tiff_raw_kind(buf.getvalue()) is None


def test_apply_flip_matches_libraw() -> None:
    a = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    assert raw.apply_flip(a, 3)[..., 0].tolist() == np.rot90(a[..., 0], 2).tolist()
    assert raw.apply_flip(a, 6)[..., 0].tolist() == np.rot90(a[..., 0], -1).tolist()
    assert raw.apply_flip(a, 5)[..., 0].tolist() == np.rot90(a[..., 0], 1).tolist()


# -------------------------------------------------------------------------------------- parity
def _photo() -> NDArray[np.uint8]:
    return np.asarray(Image.open(IMAGES / "astronaut.jpg").convert("RGB"))


def _pil_heic(data: bytes) -> NDArray[np.uint8]:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _pil_avif(data: bytes) -> NDArray[np.uint8]:
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def _pil_from_array(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.asarray(Image.fromarray(pixels).convert("RGB"))


def _jxl_reference(data: bytes) -> NDArray[np.uint8]:
    import imagecodecs

    return _pil_from_array(np.asarray(imagecodecs.jpegxl_decode(data)))


def _dng_reference(data: bytes) -> NDArray[np.uint8]:
    import rawpy

    with rawpy.imread(io.BytesIO(data)) as r:
        return _pil_from_array(r.postprocess(use_camera_wb=True, output_bps=8))


def _preview_reference(preview_jpeg: bytes) -> NDArray[np.uint8]:
    return np.asarray(
        Image.open(io.BytesIO(preview_jpeg)).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    )


def _dng_with_preview() -> tuple[bytes, bytes]:
    photo = _photo()
    data = g.dng(photo[:510, :510], orientation=6, preview=photo[:510, :510])
    import rawpy

    with rawpy.imread(io.BytesIO(data)) as r:
        return data, bytes(r.extract_thumb().data)


@pytest.mark.parametrize("fmt", ["heic", "avif", "jxl", "dng", "dng preview"])
def test_parity_with_open_clip_pil_path(fmt: str) -> None:
    """Our whole path (decode_image + preprocess + ONNX) on the file against open_clip's transform on
    the pixels that Pillow (with the format's plugin, or fed the library's own decode) gives."""
    photo = _photo()
    if fmt == "heic":
        data = g.heic(photo)
        ref = _pil_heic(data)
    elif fmt == "avif":
        data = g.avif(photo, orientation=6)
        ref = _pil_avif(data)
    elif fmt == "jxl":
        data = g.jxl(photo, orientation=6)
        ref = _jxl_reference(data)
    elif fmt == "dng":
        data = g.dng(photo, orientation=6)
        ref = _dng_reference(data)
    else:
        data, preview = _dng_with_preview()
        ref = _preview_reference(preview)
    enc = tiny_encoder()
    ours = decode_image(data, CAP)  # full resolution
    if fmt != "dng preview":
        diff = np.abs(ours.pixels.astype(int) - ref)
        print(f"{fmt}: decoded pixels vs the PIL reference: max {diff.max()}, mean {diff.mean():.4f}")
        assert diff.max() <= 2 and diff.mean() < 0.05
    out = enc.embed_image_bytes([data], max_pixels=CAP)[0]  # the service path: reduced decodes allowed
    assert out.vector is not None, out.error
    expect = enc.encode_preprocessed(
        _normalised([pil_transform(ref, enc.preprocess_cfg)], enc.preprocess_cfg)
    )[0]
    cosine = float(out.vector @ expect)
    print(f"{fmt}: cosine to open_clip's PIL path {cosine:.7f}")
    assert cosine >= IMAGE_MIN_COS
