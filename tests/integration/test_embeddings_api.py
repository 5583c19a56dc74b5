"""POST /embed/text, /embed/image and /compare over HTTP against the real stack."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.imagegen import make_image
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration


def test_embed_text_reports_truncation_and_unit_vectors(api: Api) -> None:
    long_text = " ".join(["word"] * 100)
    response = api.post("/embed/text", json={"texts": ["a photo of a dog", long_text]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == "tiny-test-clip" and body["normalized"] is True
    first, second = body["embeddings"]
    assert len(first["vector"]) == body["dim"]
    assert np.linalg.norm(first["vector"]) == pytest.approx(1.0, abs=1e-5)
    assert (first["truncated"], second["truncated"]) == (False, True)
    raw = api.post("/embed/text", json={"texts": ["a photo of a dog"], "normalize": False}).json()
    unit = np.asarray(raw["embeddings"][0]["vector"])
    assert np.allclose(unit / np.linalg.norm(unit), first["vector"], atol=1e-5)


def test_embed_image_multipart_and_base64_agree(api: Api) -> None:
    data = make_image(42, 640, 480)
    multi = api.post("/embed/image", files=[("images", ("a.jpg", data, "image/jpeg"))])
    assert multi.status_code == 200, multi.text
    b64 = api.post("/embed/image", json={"images": [{"base64": base64.b64encode(data).decode()}]})
    assert b64.status_code == 200, b64.text
    a, b = multi.json()["embeddings"][0], b64.json()["embeddings"][0]
    assert (a["width"], a["height"], a["format"]) == (640, 480, "jpeg")
    assert np.allclose(a["vector"], b["vector"], atol=1e-6)


def test_compare_image_with_texts_gives_probabilities(api: Api) -> None:
    data = make_image(43)
    body = {
        "subject": {"base64": base64.b64encode(data).decode()},
        "prompts": [{"text": "a cat"}, {"text": "a dog"}, {"base64": base64.b64encode(data).decode()}],
    }
    response = api.post("/compare", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert sum(r["probability"] for r in result["results"]) == pytest.approx(1.0, abs=1e-6)
    assert result["best"] == 2 and result["results"][2]["similarity"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "fragment"),
    [
        ("/embed/text", {"json": {"texts": [""]}}, 400, "empty"),
        ("/embed/text", {"json": {"texts": ["x"] * 65}}, 413, "limit"),
        ("/embed/image", {"files": [("images", ("a.jpg", b"", "image/jpeg"))]}, 400, "empty"),
        (
            "/embed/image",
            {"files": [("images", ("a.jpg", b"not an image at all", "image/jpeg"))]},
            415,
            "not an image",
        ),
        ("/embed/image", {"files": [("images", ("a.txt", b"hello", "text/plain"))]}, 415, "content type"),
        ("/embed/image", {"json": {"images": [{"base64": "!!!"}]}}, 400, "base64"),
        ("/embed/image", {"json": {"images": [{"url": "http://127.0.0.1:1/x.jpg"}]}}, 400, "loopback"),
        ("/compare", {"json": {"subject": {"text": "a"}, "prompts": []}}, 400, "validation"),
    ],
)
def test_embedding_bad_input_is_4xx(
    api: Api, path: str, kwargs: dict[str, object], status: int, fragment: str
) -> None:
    response = api.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert fragment in response.text.lower()
