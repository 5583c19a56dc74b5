"""The embedding API (indexer.services.embeddings): results, and a typed error for every bad input."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from indexer.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from indexer.services.embeddings import MAX_TEXT_CHARS, compare, embed_images, embed_texts
from tests.unit.clip_helpers import IMAGES, image_embeddings, reference, tiny_encoder

CAT = (IMAGES / "chelsea.jpg").read_bytes()
COFFEE = (IMAGES / "coffee.jpg").read_bytes()


def _bomb() -> bytes:
    chunk = b"IHDR" + struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_embed_texts() -> None:
    result = embed_texts(tiny_encoder(), ["a photo of a cat", "word " * 100])
    assert result.vectors.shape == (2, 32) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.truncated == [False, True] and result.n_tokens == [7, 102]
    assert result.model_id == "tiny-test-clip" and result.dim == 32 and result.normalized
    body = json.loads(json.dumps(result.to_dict()))
    assert body["embeddings"][1]["truncated"] is True and len(body["embeddings"][0]["vector"]) == 32


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        ([], InvalidInput, "texts is empty"),
        (["ok", ""], InvalidInput, "text 1 is empty"),
        (["   \n\t"], InvalidInput, "text 0 is empty"),
        (["ok", 42], InvalidInput, "text 1 is not a string"),
        (["x" * (MAX_TEXT_CHARS + 1)], InvalidInput, f"text 0 is {MAX_TEXT_CHARS + 1} characters"),
        (["a"] * 65, PayloadTooLarge, "65 texts in one request, over the limit of 64"),
        ("a photo", InvalidInput, "texts must be a list"),
    ],
)
def test_bad_texts(texts: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        embed_texts(tiny_encoder(), texts)  # type: ignore[arg-type]


def test_embed_images_matches_open_clip() -> None:
    entries = reference()["images"]
    names = [e["file"] for e in entries]
    result = embed_images(tiny_encoder(), [CAT, COFFEE])
    ref = image_embeddings()
    assert (result.vectors[0] @ ref[names.index("chelsea.jpg")]) > 0.9999
    assert [(i.format, i.width, i.height) for i in result.images] == [("jpeg", 451, 300), ("jpeg", 600, 400)]
    assert json.loads(json.dumps(result.to_dict()))["embeddings"][1]["width"] == 600


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (b"", InvalidInput, "empty file"),
        (b"not an image at all", UnsupportedMediaType, r"not an image \(unrecognised format\)"),
        (COFFEE[: len(COFFEE) // 2], InvalidInput, "truncated or corrupt JPEG"),
        (_bomb(), PayloadTooLarge, "image is 30000x30000 = 900000000 pixels, over the limit of 64000000"),
    ],
)
def test_bad_image_is_reported_with_its_index(bad: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as err:
        embed_images(tiny_encoder(), [CAT, bad, COFFEE])
    assert err.value.details["index"] == 1  # type: ignore[attr-defined]


def test_image_batch_limits() -> None:
    with pytest.raises(PayloadTooLarge, match="3 images in one request, over the limit of 2"):
        embed_images(tiny_encoder(), [CAT] * 3, max_batch=2)
    with pytest.raises(InvalidInput, match="images is empty"):
        embed_images(tiny_encoder(), [])
    with pytest.raises(InvalidInput, match="image 0 is not bytes"):
        embed_images(tiny_encoder(), ["cat.jpg"])  # type: ignore[list-item]
    with pytest.raises(PayloadTooLarge, match="over the limit of 1000"):
        embed_images(tiny_encoder(), [CAT], max_pixels=1000)


def test_compare_text_with_texts() -> None:
    enc = tiny_encoder()
    prompts = ["a photo of a cat", "a diagram", "a photo of a cat"]
    result = compare(enc, "a photo of a cat", prompts)
    assert result.subject_kind == "text" and result.prompt_kinds == ["text"] * 3
    assert result.similarities[0] == pytest.approx(1.0, abs=1e-5) and result.best == 0
    assert sum(result.probabilities) == pytest.approx(1.0)
    assert result.probabilities[0] == pytest.approx(result.probabilities[2])
    assert result.logit_scale == pytest.approx(1 / 0.07, rel=1e-6)
    sims = np.array(result.similarities)
    expect = np.exp(result.logit_scale * sims) / np.exp(result.logit_scale * sims).sum()
    np.testing.assert_allclose(result.probabilities, expect, rtol=1e-6)


def test_compare_mixed_kinds() -> None:
    enc = tiny_encoder()
    by_image = compare(enc, CAT, ["a photo of a cat", COFFEE, CAT])
    assert by_image.subject_kind == "image" and by_image.prompt_kinds == ["text", "image", "image"]
    assert by_image.best == 2 and by_image.similarities[2] == pytest.approx(1.0, abs=1e-5)
    by_text = compare(enc, "a cat", [CAT, COFFEE])
    assert by_text.prompt_kinds == ["image", "image"] and len(by_text.to_dict()["results"]) == 2


def test_compare_errors() -> None:
    enc = tiny_encoder()
    with pytest.raises(InvalidInput, match="prompts is empty"):
        compare(enc, "a cat", [])
    with pytest.raises(InvalidInput, match="prompt 1 must be a text or the bytes of an image"):
        compare(enc, "a cat", ["a dog", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="subject: text 0 is empty"):
        compare(enc, " ", ["a dog"])
    with pytest.raises(InvalidInput, match="prompt: truncated or corrupt JPEG") as err:
        compare(enc, "a cat", ["a dog", COFFEE[:500]])
    assert err.value.details["index"] == 1 and err.value.details["field"] == "prompts"
    with pytest.raises(PayloadTooLarge):
        compare(enc, "a cat", ["x"] * 65)
