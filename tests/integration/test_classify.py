"""Class sets and POST /classify over HTTP against the real stack (tiny random model: every expected
value is computed here from the stored vectors, never assumed from meaning)."""

from __future__ import annotations

import io
import uuid
from typing import Any

import cv2
import numpy as np
import pytest

from indexer.media.decode import decode_image
from indexer.model.files import tiny_model_dir
from indexer.model.loader import load_encoder
from indexer.settings import Settings
from tests.imagegen import make_image
from tests.integration.classify_helpers import error_of, indexed_collection, vectors_of
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration

LOGIT_SCALE = 14.285714149475098  # the tiny model's


@pytest.fixture(scope="module")
def known(api: Api, settings: Settings) -> dict[str, Any]:
    files = {f"k{i}.jpg": make_image(900 + i) for i in range(6)}
    name, ids = indexed_collection(api, "cls", files)
    order = sorted(files)
    vectors = vectors_of(settings, [ids[f] for f in order])
    return {"name": name, "files": files, "ids": ids, "order": order, "vectors": vectors}


def softmax(x: np.ndarray, scale: float) -> np.ndarray:
    z = np.exp(scale * (x - x.max()))
    return z / z.sum()


def create(api: Api, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = api.post("/class-sets", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


def test_raw_vector_classes_give_exact_assignments(api: Api, known: dict[str, Any]) -> None:
    v = known["vectors"]
    # three classes from known raw vectors: A = {k0, k1}, B = {k2}, C = {k3, k4}; k5 is in none.
    classes = {
        "A": {"vectors": [v[0].tolist(), v[1].tolist()]},
        "B": {"vectors": [v[2].tolist()]},
        "C": {"vectors": [v[3].tolist(), v[4].tolist()]},
    }
    set_name = f"raw-{uuid.uuid4().hex[:6]}"
    created = create(api, {"name": set_name, "collection": known["name"], "classes": classes})
    assert [c["name"] for c in created["classes"]] == ["A", "B", "C"]
    assert {r["kind"] for c in created["classes"] for r in c["references"]} == {"raw"}
    members = {"A": [0, 1], "B": [2], "C": [3, 4]}
    for i, filename in enumerate(known["order"]):
        response = api.post("/classify", json={"class_set": set_name, "image_id": known["ids"][filename]})
        assert response.status_code == 200, response.text
        [pred] = response.json()["predictions"]
        expected = np.array([max(float(v[i] @ v[j]) for j in members[c]) for c in "ABC"])
        order = np.argsort(-expected)
        assert pred["label"] == "ABC"[order[0]] and pred["is_other"] is False
        assert [r["name"] for r in pred["ranked"]] == ["ABC"[j] for j in order]
        assert [r["score"] for r in pred["ranked"]] == pytest.approx(expected[order].tolist(), abs=1e-5)
        probs = softmax(expected, LOGIT_SCALE)
        assert [r["probability"] for r in pred["ranked"]] == pytest.approx(probs[order].tolist(), abs=1e-5)
        assert pred["margin"] == pytest.approx(expected[order[0]] - expected[order[1]], abs=1e-5)
        best_ref = int(np.argmax([float(v[i] @ v[j]) for j in members[pred["label"]]]))
        match = pred["ranked"][0]["match"]
        assert match["kind"] == "raw" and match["index"] == best_ref and len(match["sha256"]) == 64
        if i < 5:  # an image whose own vector is a reference scores 1 with its class
            assert pred["score"] == pytest.approx(1.0, abs=1e-5)


def test_other_below_threshold_and_uploads(api: Api, known: dict[str, Any]) -> None:
    v = known["vectors"]
    cross = float(max(v[5] @ v[0], v[5] @ v[1]))
    assert cross < 0.9999, "the test needs distinct images"
    threshold = round((cross + 1.0) / 2, 6)
    set_name = f"thr-{uuid.uuid4().hex[:6]}"
    create(
        api,
        {
            "name": set_name,
            "collection": known["name"],
            "threshold": threshold,
            "classes": {"zero": {"vectors": [v[0].tolist()]}, "one": {"vectors": [v[1].tolist()]}},
        },
    )
    k5 = known["ids"][known["order"][5]]
    pred = api.post("/classify", json={"class_set": set_name, "image_id": k5}).json()["predictions"][0]
    assert pred["label"] == "other" and pred["is_other"] is True
    assert pred["score"] == pytest.approx(cross, abs=1e-5) and pred["ranked"][0]["name"] in {"zero", "one"}
    # an upload of k1's bytes is encoded again and matches class `one` exactly
    data = known["files"][known["order"][1]]
    response = api.post(
        "/classify",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"class_set": set_name, "top_k": "1"},
    )
    assert response.status_code == 200, response.text
    pred = response.json()["predictions"][0]
    assert pred["label"] == "one" and pred["score"] == pytest.approx(1.0, abs=1e-4)
    assert len(pred["ranked"]) == 1 and pred["box"] is None


def test_prompt_templates_ensembles_and_example_images(
    api: Api, known: dict[str, Any], settings: Settings
) -> None:
    v = known["vectors"]
    k2 = known["ids"][known["order"][2]]
    set_name = f"mix-{uuid.uuid4().hex[:6]}"
    created = create(
        api,
        {
            "name": set_name,
            "collection": known["name"],
            "ensemble": True,
            "classes": {"cat": {"prompts": ["cat"]}, "two": {"image_ids": [k2], "prompts": ["dog"]}},
        },
    )
    assert created["templates"] == [
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    ]
    cat_ref = created["classes"][0]["references"][0]
    assert cat_ref["kind"] == "prompt" and cat_ref["text"].startswith("ensemble of 7 templates")
    # the ensemble vector, computed here with the same tiny model: mean of normalised, normalised
    encoder = load_encoder(Settings(model_dir=tiny_model_dir()))
    texts, _ = encoder.encode_texts([t.replace("{}", "cat") for t in created["templates"]])
    texts = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    cat = texts.mean(axis=0)
    cat /= np.linalg.norm(cat)
    k0 = known["ids"][known["order"][0]]
    pred = api.post("/classify", json={"class_set": set_name, "image_id": k0}).json()["predictions"][0]
    cat_score = next(r for r in pred["ranked"] if r["name"] == "cat")
    assert cat_score["score"] == pytest.approx(float(v[0] @ cat), abs=1e-4)
    assert cat_score["match"]["kind"] == "prompt" and cat_score["match"]["prompt"] == "cat"
    # k2 itself: class `two` wins through its example image, which is named as the explanation
    pred = api.post("/classify", json={"class_set": set_name, "image_id": k2}).json()["predictions"][0]
    assert pred["label"] == "two" and pred["ranked"][0]["match"] == {"kind": "image", "image_id": k2}
    # example uploads add an image reference; plain templates render one reference per template
    patch = api.request(
        "PATCH", f"/class-sets/{set_name}", json={"templates": ["a {}", "the {}"], "ensemble": False}
    )
    assert patch.status_code == 200, patch.text
    cat_texts = [r["text"] for r in patch.json()["classes"][0]["references"]]
    assert sorted(cat_texts) == ["a cat", "the cat"]
    up = api.post(
        f"/class-sets/{set_name}/examples",
        data={"class": "five"},
        files=[("files", ("k5.jpg", known["files"][known["order"][5]], "image/jpeg"))],
    )
    assert up.status_code == 200, up.text
    five = next(c for c in up.json()["classes"] if c["name"] == "five")
    assert five["references"][0]["filename"] == "k5.jpg"
    k5 = known["ids"][known["order"][5]]
    pred = api.post("/classify", json={"class_set": set_name, "image_id": k5}).json()["predictions"][0]
    assert pred["label"] == "five" and pred["score"] == pytest.approx(1.0, abs=1e-4)
    assert pred["ranked"][0]["match"]["filename"] == "k5.jpg"


def test_crud_and_raw_embedding_upload(api: Api, known: dict[str, Any]) -> None:
    v = known["vectors"]
    set_name = f"crud-{uuid.uuid4().hex[:6]}"
    create(api, {"name": set_name, "collection": known["name"], "description": "d"})
    listed = api.get(f"/class-sets?collection={known['name']}").json()["class_sets"]
    assert set_name in [s["name"] for s in listed]
    assert create(api, {"name": set_name, "collection": known["name"]}, 409)["error"]["code"] == "conflict"
    added = api.post(
        f"/class-sets/{set_name}/embeddings", json={"x": v[0].tolist(), "y": [v[1].tolist(), v[2].tolist()]}
    )
    assert added.status_code == 200, added.text
    body = added.json()
    assert [(c["name"], len(c["references"])) for c in body["classes"]] == [("x", 1), ("y", 2)]
    version = body["version"]
    changed = api.request(
        "PATCH", f"/class-sets/{set_name}", json={"threshold": 0.5, "remove_classes": ["x"]}
    ).json()
    assert changed["threshold"] == 0.5 and [c["name"] for c in changed["classes"]] == ["y"]
    assert changed["version"] > version
    cleared = api.request("PATCH", f"/class-sets/{set_name}", json={"threshold": None}).json()
    assert cleared["threshold"] is None
    assert api.delete(f"/class-sets/{set_name}").status_code == 204
    assert api.get(f"/class-sets/{set_name}").status_code == 404


def test_regions_classify_as_their_source_images(api: Api, known: dict[str, Any]) -> None:
    # a canvas with k0 on the left and k3 on the right (lossless PNG, so each crop is the decoded
    # source exactly), and an example-image class set of the two sources
    order, ids, files = known["order"], known["ids"], known["files"]
    left = decode_image(files[order[0]], 10**8).pixels
    right = decode_image(files[order[3]], 10**8).pixels
    h, w = left.shape[:2]
    canvas = np.zeros((h + 40, 2 * w + 30, 3), np.uint8)
    canvas[10 : 10 + h, 0:w] = left
    canvas[40 : 40 + h, w + 30 : 2 * w + 30] = right
    ok, png = cv2.imencode(".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    assert ok
    set_name = f"reg-{uuid.uuid4().hex[:6]}"
    create(
        api,
        {
            "name": set_name,
            "collection": known["name"],
            "classes": {"left": {"image_ids": [ids[order[0]]]}, "right": {"image_ids": [ids[order[3]]]}},
        },
    )
    boxes = [[0, 10, w, 10 + h], [w + 30, 40, 2 * w + 30, 40 + h]]
    response = api.post(
        "/classify",
        files={"image": ("canvas.png", io.BytesIO(png.tobytes()), "image/png")},
        data={"class_set": set_name, "boxes": str(boxes).replace("'", '"')},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["width"] == 2 * w + 30 and body["height"] == h + 40
    preds = body["predictions"]
    assert [p["label"] for p in preds] == ["left", "right"]
    assert [p["box"] for p in preds] == boxes
    assert all(p["score"] == pytest.approx(1.0, abs=1e-4) for p in preds)
    # the same boxes normalised to [0, 1]
    W, H = 2 * w + 30, h + 40
    normalised = [[x1 / W, y1 / H, x2 / W, y2 / H] for x1, y1, x2, y2 in boxes]
    response = api.post(
        "/classify",
        files={"image": ("canvas.png", io.BytesIO(png.tobytes()), "image/png")},
        data={"class_set": set_name, "boxes": str(normalised), "box_format": "normalized"},
    )
    assert [p["label"] for p in response.json()["predictions"]] == ["left", "right"]


def test_regions_of_a_stored_image(api: Api, known: dict[str, Any]) -> None:
    ids, order = known["ids"], known["order"]
    set_name = f"sreg-{uuid.uuid4().hex[:6]}"
    create(
        api,
        {
            "name": set_name,
            "collection": known["name"],
            "classes": {"k1": {"image_ids": [ids[order[1]]]}, "k4": {"image_ids": [ids[order[4]]]}},
        },
    )
    # the whole stored k4 as a box reads its original from the blob store: same pixels, same vector
    response = api.post(
        "/classify",
        json={
            "class_set": set_name,
            "image_id": ids[order[4]],
            "boxes": [[0, 0, 320, 240], [0.0, 0.0, 0.5, 0.5]],
        },
    )
    assert response.status_code == 200, response.text
    preds = response.json()["predictions"]
    assert preds[0]["label"] == "k4" and preds[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert preds[1]["box"] == [0, 0, 160, 120]


@pytest.mark.parametrize(
    ("case", "status", "fragment"),
    [
        ("wrong_dimension", 400, "has dimension 3; model tiny-test-clip has dimension 32"),
        ("wrong_dimension_upload", 400, "dimension 2"),
        ("unknown_set", 404, "unknown class set"),
        ("box_outside", 400, "outside the 320x240 image"),
        ("empty_set", 400, "is empty"),
        ("empty_class", 400, "has no references"),
        ("reserved_name", 400, "reserved"),
        ("unknown_image", 400, "unknown image id"),
        ("bad_template", 400, "exactly one {}"),
        ("no_input", 400, "image_id"),
        ("unknown_collection", 404, "unknown collection"),
        ("malformed_id", 400, "malformed image id"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_reason(
    api: Api, known: dict[str, Any], case: str, status: int, fragment: str
) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    k0 = known["ids"][known["order"][0]]
    good = {"name": name, "collection": known["name"], "classes": {"a": {"vectors": [[1.0] * 32]}}}
    if case == "wrong_dimension":
        response = api.post("/class-sets", json={**good, "classes": {"a": {"vectors": [[1, 0, 0]]}}})
    elif case == "wrong_dimension_upload":
        create(api, good)
        response = api.post(f"/class-sets/{name}/embeddings", json={"b": [[1.0, 2.0]]})
    elif case == "unknown_set":
        response = api.post("/classify", json={"class_set": "no-such-set", "image_id": k0})
    elif case == "box_outside":
        create(api, good)
        response = api.post(
            "/classify", json={"class_set": name, "image_id": k0, "boxes": [[100, 100, 400, 200]]}
        )
    elif case == "empty_set":
        create(api, {"name": name, "collection": known["name"]})
        response = api.post("/classify", json={"class_set": name, "image_id": k0})
        assert api.post(f"/class-sets/{name}/label").status_code == 400
    elif case == "empty_class":
        response = api.post("/class-sets", json={**good, "classes": {"a": {}}})
    elif case == "reserved_name":
        response = api.post("/class-sets", json={**good, "classes": {"other": {"prompts": ["x"]}}})
    elif case == "unknown_image":
        response = api.post(
            "/class-sets", json={**good, "classes": {"a": {"image_ids": [str(uuid.uuid4())]}}}
        )
    elif case == "bad_template":
        response = api.post("/class-sets", json={**good, "templates": ["no placeholder"]})
    elif case == "no_input":
        create(api, good)
        response = api.post("/classify", json={"class_set": name})
    elif case == "malformed_id":
        create(api, good)
        response = api.post("/classify", json={"class_set": name, "image_id": "S", "boxes": [[0, 0, 1, 1]]})
    else:
        response = api.post("/class-sets", json={**good, "collection": "no-such-collection"})
    assert response.status_code == status, response.text
    assert fragment in error_of(response)
    if case in {"wrong_dimension", "empty_class", "reserved_name", "unknown_image", "bad_template"}:
        assert api.get(f"/class-sets/{name}").status_code == 404  # nothing was stored
