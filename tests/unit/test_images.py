"""Image decoding: every supported format, orientation, and each bad input's exact typed error."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from indexer.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from indexer.media import decode as images
from indexer.media.decode import (
    check_content_type,
    decode_image,
    make_thumbnail,
    read_header,
    shrink,
    sniff_format,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = FIXTURES / "images"
MANIFEST = json.loads((FIXTURES / "reference.json").read_text())["images"]
LIMIT = 64_000_000


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _pil_reference(name: str) -> np.ndarray:
    img = ImageOps.exif_transpose(Image.open(IMAGES / name))
    if img.mode == "I;16":
        return np.repeat((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_every_fixture_decodes_like_pil(entry: dict[str, object]) -> None:
    name = str(entry["file"])
    decoded = decode_image((IMAGES / name).read_bytes(), LIMIT)
    assert decoded.format == entry["format"]
    assert (decoded.width, decoded.height) == (entry["width"], entry["height"])
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == (decoded.height, decoded.width, 3)
    # identical pixels to PIL's decode + convert("RGB") (the reference pipeline), EXIF applied
    np.testing.assert_array_equal(decoded.pixels, _pil_reference(name))


def test_exif_orientation_is_applied_and_dims_are_display_dims() -> None:
    data = (IMAGES / "exif_rotate90.jpg").read_bytes()
    header = read_header(data)
    assert (header.width, header.height) == (320, 240)  # stored landscape
    decoded = decode_image(data, LIMIT)
    assert (decoded.width, decoded.height) == (240, 320)  # displayed portrait


def test_gif_first_frame_only() -> None:
    first = np.asarray(Image.open(IMAGES / "anim.gif").convert("RGB"))
    np.testing.assert_array_equal(decode_image((IMAGES / "anim.gif").read_bytes(), LIMIT).pixels, first)


def test_reduced_jpeg_decode_keeps_min_side() -> None:
    data = (IMAGES / "retina.jpg").read_bytes()  # 1411x1411
    full = decode_image(data, LIMIT)
    reduced = decode_image(data, LIMIT, min_side=448)
    assert full.reduction == 1 and reduced.reduction == 2
    assert min(reduced.pixels.shape[:2]) >= 448
    assert (reduced.width, reduced.height) == (1411, 1411)  # full-resolution dimensions are reported
    assert decode_image(data, LIMIT, min_side=300).reduction == 4
    assert decode_image(data, LIMIT, min_side=2000).reduction == 1
    # other formats never reduce
    # other formats decode in full, then are area-reduced at once by the same factors (issue 9)
    png = decode_image((IMAGES / "grey.png").read_bytes(), LIMIT, min_side=100)
    assert (png.reduction, png.pixels.shape[:2], png.width, png.height) == (2, (120, 160), 320, 240)
    assert decode_image((IMAGES / "grey.png").read_bytes(), LIMIT, min_side=200).reduction == 1


def test_empty_file() -> None:
    with pytest.raises(InvalidInput) as err:
        decode_image(b"", LIMIT)
    assert err.value.message == "empty file"
    assert err.value.details["reason"] == "empty"


@pytest.mark.parametrize("data", [b"hello world", b"%PDF-1.7 ...", b"\x00" * 100, b"<svg></svg>", b"GIF8"])
def test_unrecognised_bytes(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as err:
        decode_image(data, LIMIT)
    assert err.value.message == "not an image (unrecognised format)"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("coffee.jpg", "JPEG"),
        ("progressive.jpg", "JPEG"),
        ("grey.png", "PNG"),
        ("photo.webp", "WEBP"),
        ("photo.bmp", "BMP"),
        ("photo.tiff", "TIFF"),
        ("anim.gif", "GIF"),
    ],
)
@pytest.mark.parametrize("fraction", [0.002, 0.5, 0.97])
def test_truncated_files(name: str, fmt: str, fraction: float) -> None:
    data = (IMAGES / name).read_bytes()
    cut = data[: max(2, int(len(data) * fraction))]
    with pytest.raises(InvalidInput) as err:
        decode_image(cut, LIMIT)
    assert err.value.message.startswith(f"truncated or corrupt {fmt}")
    assert err.value.details["reason"] == "corrupt"


def test_corrupt_jpeg_frame_header() -> None:
    data = bytearray((IMAGES / "coffee.jpg").read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 9] = 7  # 7 colour components in a frame header sized for 3
    with pytest.raises(InvalidInput, match="truncated or corrupt JPEG"):
        decode_image(bytes(data), LIMIT)


def test_garbled_jpeg_scan_data_still_decodes_like_pil() -> None:
    """libjpeg recovers from bad entropy-coded data (a warning, grey blocks); PIL and browsers show such
    files too, so they are indexed rather than rejected."""
    data = bytearray((IMAGES / "coffee.jpg").read_bytes())
    sos = data.find(b"\xff\xda")
    data[sos + 20 : sos + 4000] = b"\xff\xd0" * 1990
    assert decode_image(bytes(data), LIMIT).pixels.shape == (400, 600, 3)


def test_jpeg_with_trailing_data_is_fine() -> None:
    data = (IMAGES / "coffee.jpg").read_bytes() + b"\x00\x00ftypmp42 motion photo payload"
    assert decode_image(data, LIMIT).width == 600


def test_decompression_bomb_rejected_from_header_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decode(*args: object) -> None:
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(images.cv2, "imdecode", no_decode)
    with pytest.raises(PayloadTooLarge) as err:
        decode_image(_png_header(20000, 20000) + b"\x00" * 100, LIMIT)
    assert err.value.message == ("image is 20000x20000 = 400000000 pixels, over the limit of 64000000")
    assert err.value.details["pixels"] == 400_000_000


@pytest.mark.parametrize("fmt", [".jpg", ".png", ".webp", ".bmp", ".tiff", ".gif"])
def test_pixel_limit_applies_to_every_format(fmt: str) -> None:
    img = np.zeros((300, 400, 3), dtype=np.uint8)
    ok, enc = cv2.imencode(fmt, img)
    assert ok
    data = enc.tobytes()
    assert read_header(data).pixels == 120_000
    assert decode_image(data, 120_000).width == 400
    with pytest.raises(PayloadTooLarge, match=r"image is 400x300 = 120000 pixels, over the limit of 119999"):
        decode_image(data, 119_999)


def test_big_dims_in_every_header_parser() -> None:
    jpeg = bytearray((IMAGES / "coffee.jpg").read_bytes())
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    gif = bytearray((IMAGES / "anim.gif").read_bytes())
    gif[6:10] = struct.pack("<HH", 65000, 65000)
    bmp = bytearray((IMAGES / "photo.bmp").read_bytes())
    bmp[18:26] = struct.pack("<ii", 40000, -40000)
    for data in (bytes(jpeg), bytes(gif), bytes(bmp)):
        with pytest.raises(PayloadTooLarge):
            decode_image(data, LIMIT)


def test_gif_frame_larger_than_its_screen_counts() -> None:
    gif = bytearray((IMAGES / "anim.gif").read_bytes())
    desc = gif.find(b"\x2c\x00\x00\x00\x00")  # first image descriptor at (0, 0)
    gif[desc + 5 : desc + 9] = struct.pack("<HH", 30000, 30000)
    assert read_header(bytes(gif)).pixels == 900_000_000
    with pytest.raises(PayloadTooLarge, match="image is 30000x30000"):
        decode_image(bytes(gif), LIMIT)


def test_header_dims_match_decoded_dims() -> None:
    for entry in MANIFEST:
        data = (IMAGES / entry["file"]).read_bytes()
        header = read_header(data)
        assert sorted((header.width, header.height)) == sorted((entry["width"], entry["height"]))


def test_sniff_needs_only_the_first_bytes() -> None:
    for entry in MANIFEST:
        head = (IMAGES / entry["file"]).read_bytes()[:16]
        assert sniff_format(head) == entry["format"]


def test_content_types() -> None:
    for ok in ("image/jpeg", "image/png; charset=binary", "IMAGE/WEBP", "application/octet-stream", None, ""):
        check_content_type(ok)
    for bad in ("text/plain", "application/json", "image/svg+xml", "video/mp4"):
        with pytest.raises(UnsupportedMediaType, match="unsupported content type"):
            check_content_type(bad)


@pytest.mark.parametrize("crop", [(0, 0), (1, 0), (0, 3), (5, 7)])
def test_shrink_is_close_to_lanczos_of_the_same_pixels(crop: tuple[int, int]) -> None:
    """Whole-factor area averaging then bilinear (the thumbnail's fast resize) against Pillow's Lanczos:
    the right size, and as close as a JPEG q85 encoding is (nearest-neighbour scores about 24 dB here)."""
    pixels = decode_image((IMAGES / "coffee.jpg").read_bytes(), LIMIT).pixels
    pixels = pixels[: pixels.shape[0] - crop[0], : pixels.shape[1] - crop[1]]
    h, w = pixels.shape[:2]
    for target in (256, 200, 97):
        size = (round(w * target / max(h, w)), round(h * target / max(h, w)))
        small = shrink(pixels, size)
        assert (small.shape[1], small.shape[0]) == size and small.dtype == np.uint8
        reference = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS), dtype=float)
        mse = float(np.mean((small.astype(float) - reference) ** 2))
        assert 10 * np.log10(255**2 / mse) > 30


def test_thumbnail() -> None:
    decoded = decode_image((IMAGES / "coffee.jpg").read_bytes(), LIMIT)
    thumb = make_thumbnail(decoded, 256)
    small = np.asarray(cv2.imdecode(np.frombuffer(thumb, np.uint8), cv2.IMREAD_COLOR))
    assert small.shape == (171, 256, 3)
    # never upscaled, and the colours stay RGB -> BGR correct
    tiny = make_thumbnail(decoded.pixels[:10, :20], 256)
    back = np.asarray(cv2.imdecode(np.frombuffer(tiny, np.uint8), cv2.IMREAD_COLOR_RGB))
    assert back.shape == (10, 20, 3)
    assert np.abs(back.astype(int).mean((0, 1)) - decoded.pixels[:10, :20].astype(int).mean((0, 1))).max() < 6
    with pytest.raises(InvalidInput):
        make_thumbnail(decoded, 0)
