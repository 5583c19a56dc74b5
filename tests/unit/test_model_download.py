"""Model downloads against a local stand-in for the Hub (127.0.0.1 only): first pull, cache hits, resume
after a dropped connection, corrupt downloads, and the offline errors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.errors import ModelUnavailable
from indexer.model.files import REQUIRED_FILES, find_cached, pull_model, resolve_model, tiny_model_dir
from indexer.model.loader import load_encoder
from indexer.settings import Settings
from tests.unit.fake_hub import FakeHub

MODEL = "tiny-hub__test"
REPO = f"immich-app/{MODEL}"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    server = FakeHub()
    server.add_model_dir(REPO, tiny_model_dir())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, hub: FakeHub) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", hf_endpoint=hub.url, model_id=MODEL, onnx_threads=1)


def _same_as_tiny(path: Path) -> None:
    for name in REQUIRED_FILES:
        assert (
            hashlib.sha256((path / name).read_bytes()).digest()
            == hashlib.sha256((tiny_model_dir() / name).read_bytes()).digest()
        ), name


def test_pull_then_cache_hits_then_offline_load(settings: Settings, hub: FakeHub) -> None:
    path = pull_model(settings, MODEL)
    _same_as_tiny(path)
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert files == set(REQUIRED_FILES)  # no README, no RKNN build for other hardware
    assert len(hub.gets()) == len(REQUIRED_FILES)

    hub.requests.clear()
    assert pull_model(settings, MODEL) == path  # a cache hit: metadata only
    assert hub.gets() == []

    hub.requests.clear()
    assert find_cached(settings, MODEL) == path
    encoder = load_encoder(settings)  # offline by default
    vectors, _ = encoder.encode_texts(["a photo of a cat"])
    assert vectors.shape == (1, 32) and encoder.model_id == MODEL and encoder.status()["source"] == "hub"
    assert hub.requests == []  # resolving and loading never touched the network


def test_resume_after_dropped_connection(
    settings: Settings, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    hub.drop_after["visual/model.onnx"] = 400_000
    path = pull_model(settings, MODEL)
    _same_as_tiny(path)
    visual = hub.gets("visual/model.onnx")
    assert len(visual) == 2
    assert visual[0][2] is None and visual[1][2] is not None and visual[1][2].startswith("bytes=")
    start = int(visual[1][2].split("=")[1].split("-")[0])
    assert 0 < start <= 400_000  # resumed where the first transfer stopped, not from zero


def test_corrupt_download_is_detected_and_fetched_again(settings: Settings, hub: FakeHub) -> None:
    hub.corrupt["textual/model.onnx"] = 1  # right size, one flipped byte, correct checksum advertised
    path = pull_model(settings, MODEL)
    _same_as_tiny(path)
    assert len(hub.gets("textual/model.onnx")) == 2


def test_persistently_corrupt_download_fails_cleanly(settings: Settings, hub: FakeHub) -> None:
    hub.corrupt["textual/model.onnx"] = 5
    with pytest.raises(ModelUnavailable) as err:
        pull_model(settings, MODEL)
    assert "checksum mismatch in textual/model.onnx" in err.value.message
    assert find_cached(settings, MODEL) is None  # the corrupt file is not left to be loaded later


def test_unknown_repository(settings: Settings) -> None:
    with pytest.raises(ModelUnavailable, match="no model repository 'immich-app/nope__nothing'"):
        pull_model(settings, "nope__nothing")


def test_unreachable_hub(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, hf_endpoint="http://127.0.0.1:9", model_id=MODEL)
    with pytest.raises(ModelUnavailable, match=f"download of '{MODEL}' from http://127.0.0.1:9 failed"):
        pull_model(settings, MODEL)


def test_missing_model_offline_says_how_to_pull(tmp_path: Path, hub: FakeHub) -> None:
    settings = Settings(cache_dir=tmp_path, hf_endpoint=hub.url, model_id="ViT-B-32__openai")
    with pytest.raises(ModelUnavailable) as err:
        load_encoder(settings)
    assert "`clipsearch models pull ViT-B-32__openai`" in err.value.message
    assert err.value.details["repo_id"] == "immich-app/ViT-B-32__openai"
    assert hub.requests == []


def test_allow_download_pulls_on_demand(settings: Settings, hub: FakeHub) -> None:
    resolved = resolve_model(settings, allow_download=True)
    assert resolved.source == "hub" and resolved.model_id == MODEL
    assert len(hub.gets()) == len(REQUIRED_FILES)


def test_cli_pull_and_list(
    settings: Settings, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipsearch.cli import main

    monkeypatch.setenv("CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert main(["models", "pull", MODEL]) == 0
    assert "snapshots" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "* ViT-B-32__openai" in listing and "not downloaded" in listing and "tiny-test-clip" in listing


def test_cli_errors_are_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipsearch.cli import main

    monkeypatch.setenv("CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setenv("MODEL_ID", "ViT-B-32__openai")
    assert main(["models", "quantize"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: model 'ViT-B-32__openai' is not available offline")
    assert "Traceback" not in err


def test_quantize_cli_writes_int8(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipsearch.cli import main

    monkeypatch.setenv("CACHE_DIR", str(settings.cache_dir))
    assert main(["models", "quantize", "tiny-test-clip"]) == 0
    out = capsys.readouterr().out
    assert "cosine to fp32 on the probe set: images min 0.99" in out and "(threshold 0.999)" in out
    assert "image tower: s8-reduced" in out or "image tower: u8u8" in out
    assert "measured on " in out
    encoder = load_encoder(settings.model_copy(update={"model_id": "tiny-test-clip"}), precision="int8")
    assert encoder.precision == "int8" and encoder.model_dir.is_relative_to(settings.cache_dir)
    vectors = encoder.encode_images([np.zeros((100, 100, 3), np.uint8)])
    assert vectors.shape == (1, 32)
