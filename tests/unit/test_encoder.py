"""ClipEncoder: model resolution, lazy sessions, status, int8, fixed-batch exports, the batch pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from indexer.errors import InvalidInput, ModelUnavailable
from indexer.media.decode import decode_image
from indexer.model import sessions
from indexer.model.encoder import ClipEncoder
from indexer.model.files import model_id_for_dir, tiny_model_dir
from indexer.model.loader import load_encoder, tiny_encoder
from indexer.settings import Settings
from tests.unit.clip_helpers import IMAGES
from tests.unit.clip_helpers import tiny_encoder as shared_encoder


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", onnx_threads=1)


def test_model_dir_wins_and_names_itself(settings: Settings) -> None:
    enc = load_encoder(settings.model_copy(update={"model_dir": tiny_model_dir()}))
    assert enc.model_id == "tiny-test-clip" and enc.is_test_model and enc.source == "model_dir"
    assert (enc.dim, enc.image_size, enc.context_length, enc.min_decode_side) == (32, 224, 77, 336)
    assert enc.logit_scale == pytest.approx(1 / 0.07, rel=1e-6)


def test_bundled_tiny_model_explicitly(settings: Settings) -> None:
    enc = tiny_encoder(settings)
    assert enc.is_test_model and enc.source == "bundled" and enc.model_dir == tiny_model_dir()


def test_bad_model_dirs(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_encoder(settings.model_copy(update={"model_dir": tmp_path / "nope"}))
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir(), partial)
    (partial / "textual" / "model.onnx").unlink()
    with pytest.raises(ModelUnavailable, match=r"missing textual/model\.onnx"):
        load_encoder(settings.model_copy(update={"model_dir": partial}))


def test_model_id_of_an_unnamed_dir(tmp_path: Path) -> None:
    local = tmp_path / "my-export"
    shutil.copytree(tiny_model_dir(), local)
    cfg = json.loads((local / "config.json").read_text())
    del cfg["model_id"]
    (local / "config.json").write_text(json.dumps(cfg))
    assert model_id_for_dir(local, Settings()) == "local:my-export"
    assert model_id_for_dir(local, Settings(model_id="ViT-B-16__openai")) == "ViT-B-16__openai"


def test_sessions_load_lazily_and_status(settings: Settings) -> None:
    enc = tiny_encoder(settings)
    status = enc.status()
    assert status["loaded"] == {"visual": False, "textual": False}
    assert status["provider"] == "CPUExecutionProvider" and status["onnxruntime_version"]
    assert (status["model_id"], status["precision"], status["is_test_model"]) == (
        "tiny-test-clip",
        "fp32",
        True,
    )
    enc.encode_texts(["hello"])
    assert enc.status()["loaded"] == {"visual": False, "textual": True}
    enc.load()
    assert enc.loaded and enc.status()["provider"] == "CPUExecutionProvider"
    enc.unload()
    assert not enc.loaded
    json.dumps(enc.status())


def test_session_options_and_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    options = sessions.session_options(3)
    assert options.intra_op_num_threads == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    monkeypatch.setattr(
        sessions.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert sessions.default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert sessions.default_providers() == ["CPUExecutionProvider"]


def test_int8(settings: Settings) -> None:
    enc = load_encoder(settings.model_copy(update={"model_id": "tiny-test-clip", "model_precision": "int8"}))
    assert enc.precision == "int8" and enc.model_dir.is_relative_to(settings.cache_dir)
    assert json.loads((enc.model_dir / "config.json").read_text())["precision"] == "int8"
    texts = ["a photo of a cat", "a red car", "two dogs"]
    fp32 = shared_encoder().encode_texts(texts)[0]
    assert (enc.encode_texts(texts)[0] * fp32).sum(axis=1).min() > 0.99
    with pytest.raises(ModelUnavailable, match="clipsearch models quantize local:x"):
        local = settings.cache_dir.parent / "x"
        shutil.copytree(tiny_model_dir(), local)
        cfg = json.loads((local / "config.json").read_text())
        del cfg["model_id"]
        (local / "config.json").write_text(json.dumps(cfg))
        load_encoder(settings.model_copy(update={"model_dir": local}), precision="int8")


def _fixed_batch_copy(dst: Path) -> Path:
    """Immich's exports have a fixed batch of 1."""
    shutil.copytree(tiny_model_dir(), dst)
    for tower in ("visual", "textual"):
        path = dst / tower / "model.onnx"
        model = onnx.load(str(path))
        for value in (*model.graph.input, *model.graph.output):
            dim = value.type.tensor_type.shape.dim[0]
            dim.Clear()
            dim.dim_value = 1
        onnx.save(model, str(path))
    return dst


def test_fixed_batch_exports(tmp_path: Path) -> None:
    fixed = ClipEncoder(_fixed_batch_copy(tmp_path / "fixed"), model_id="tiny-test-clip", threads=1)
    images = [
        decode_image((IMAGES / n).read_bytes(), 10**8).pixels
        for n in ("chelsea.jpg", "coffee.jpg", "rocket.jpg")
    ]
    texts = ["a", "b c", "a photo of a cat"]
    np.testing.assert_allclose(fixed.encode_images(images), shared_encoder().encode_images(images), atol=1e-5)
    np.testing.assert_allclose(
        fixed.encode_texts(texts)[0], shared_encoder().encode_texts(texts)[0], atol=1e-5
    )
    assert fixed.visual.fixed_batch == 1 and shared_encoder().visual.fixed_batch is None


def test_pipeline_keeps_order_and_errors_in_place() -> None:
    enc = ClipEncoder(tiny_model_dir(), model_id="tiny-test-clip", threads=1, batch_size=2, prep_workers=2)
    names = ["chelsea.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg", "photo.webp"]
    items = [(IMAGES / n).read_bytes() for n in names]
    items.insert(2, b"garbage")
    items.insert(4, b"")
    outcomes = enc.embed_image_bytes(items, max_pixels=10**8)
    assert [o.index for o in outcomes] == list(range(7))
    assert [o.error is None for o in outcomes] == [True, True, False, True, False, True, True]
    assert outcomes[2].error is not None and outcomes[2].error.message == "not an image (unrecognised format)"
    assert outcomes[4].error is not None and outcomes[4].error.message == "empty file"
    singles = [
        enc.embed_image_bytes([d], max_pixels=10**8)[0].vector for d in items if d not in (b"", b"garbage")
    ]
    good = [o.vector for o in outcomes if o.vector is not None]
    np.testing.assert_allclose(np.stack(good), np.stack(singles), atol=1e-6)  # type: ignore[arg-type]
    assert outcomes[0].format == "jpeg" and (outcomes[0].width, outcomes[0].height) == (451, 300)
    enc.close()


def test_encode_images_input_checks_and_empty() -> None:
    enc = shared_encoder()
    with pytest.raises(InvalidInput, match="image 1 is not an RGB uint8 array"):
        enc.encode_images([np.zeros((50, 50, 3), np.uint8), np.zeros((50, 50), np.uint8)])
    assert enc.encode_images([]).shape == (0, 32)
    assert enc.encode_texts([])[0].shape == (0, 32)
    assert enc.embed_image_bytes([], max_pixels=10) == []
    assert enc.preprocess(np.zeros((10, 20, 3), np.uint8)).shape == (3, 224, 224)


def test_unknown_precision(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="unknown precision 'fp16'"):
        load_encoder(settings.model_copy(update={"model_id": "tiny-test-clip"}), precision="fp16")
