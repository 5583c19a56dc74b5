"""int8 quantisation: faithful to fp32 on this machine, kernels that cannot saturate on any CPU, a gate that
refuses an unfaithful model, and the CPU features it reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from indexer.errors import ModelUnavailable
from indexer.model import int8
from indexer.model.cpu import parse_cpuinfo, u8s8_saturates
from indexer.model.encoder import ClipEncoder
from indexer.model.files import tiny_model_dir
from indexer.model.quantize import PROBE_TEXTS, SCHEMES, quantize_model_dir
from tests.unit.clip_helpers import IMAGES, reference

FULL_VIT_B32 = Path.home() / ".cache" / "clipsearch" / "models" / "ViT-B-32-random"
MIN_COSINE = 0.999


def _cosines_to_fp32(fp32_dir: Path, int8_dir: Path) -> tuple[float, float]:
    """Minimum image and text cosine, computed here (not by the code under test) on the test fixtures:
    real photos in every format the fixtures hold, and every fixture prompt plus the probe prompts."""
    photos = [p.read_bytes() for p in sorted(IMAGES.iterdir())]
    texts = [str(t) for t in reference()["texts"]] + list(PROBE_TEXTS)
    out = []
    for path, precision in ((fp32_dir, "fp32"), (int8_dir, "int8")):
        enc = ClipEncoder(path, model_id="t", precision=precision, threads=1)
        images = np.stack([np.asarray(o.vector) for o in enc.embed_image_bytes(photos, max_pixels=10**9)])
        out.append((images, enc.encode_texts(texts)[0]))
        enc.close()
    (fi, ft), (qi, qt) = out
    return float((fi * qi).sum(1).min()), float((ft * qt).sum(1).min())


def _quantised_weights(model: Path) -> list[np.ndarray]:
    graph = onnx.load(str(model)).graph
    return [numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("_quantized")]


def test_tiny_model_is_faithful_and_records_it(tmp_path: Path) -> None:
    done = quantize_model_dir(tiny_model_dir(), tmp_path / "int8", min_cosine=MIN_COSINE)
    image, text = _cosines_to_fp32(tiny_model_dir(), done.path)
    assert image >= MIN_COSINE and text >= MIN_COSINE, (image, text)
    assert done.fidelity.worst >= MIN_COSINE
    record = json.loads((done.path / "config.json").read_text())["quantization"]
    assert record["faithful_on_every_cpu"] is True
    assert record["cosine_to_fp32"]["image_min"] == pytest.approx(done.fidelity.image_min, abs=1e-6)
    assert record["towers"] == done.towers and done.towers["visual"] in ("s8-reduced", "u8u8")
    assert record["measured_on"]["cpu"]
    # The image tower really is quantised (the whole point: ingest throughput).
    assert _quantised_weights(done.path / "visual" / "model.onnx")


@pytest.mark.skipif(
    not (FULL_VIT_B32 / "config.json").is_file(),
    reason="no full-size random ViT-B/32: scripts/make_tiny_model.py --vit-b32 makes it (torch needed)",
)
def test_full_size_vit_b32_is_faithful_in_both_towers(tmp_path: Path) -> None:
    done = quantize_model_dir(FULL_VIT_B32, tmp_path / "int8", min_cosine=MIN_COSINE, threads=2)
    assert "fp32" not in done.towers.values(), done.towers
    image, text = _cosines_to_fp32(FULL_VIT_B32, done.path)
    assert image >= MIN_COSINE and text >= MIN_COSINE, (image, text)


def test_default_scheme_cannot_saturate_on_any_cpu(tmp_path: Path) -> None:
    """U8U8 (uint8 weights) runs kernels that widen to int16 before multiplying, on every CPU; s8-reduced
    keeps |w| <= 64 so that a pair of u8*s8 products (at most 2*255*64 = 32640) fits the int16 sums of the
    AVX2 kernels without VNNI. The legacy full-range int8 scheme does not."""
    u8 = quantize_model_dir(tiny_model_dir(), tmp_path / "u8", schemes=("u8u8",), min_cosine=0.0).path
    weights = _quantised_weights(u8 / "visual" / "model.onnx")
    assert weights and all(w.dtype == np.uint8 for w in weights)
    s8r = quantize_model_dir(tiny_model_dir(), tmp_path / "s8r", schemes=("s8-reduced",), min_cosine=0.0).path
    weights = _quantised_weights(s8r / "visual" / "model.onnx")
    assert weights and all(
        w.dtype == np.int8 and int(np.abs(w.astype(np.int32)).max()) <= 64 for w in weights
    )
    assert max(2 * 255 * int(np.abs(w.astype(np.int32)).max()) for w in weights) < 2**15
    legacy = quantize_model_dir(tiny_model_dir(), tmp_path / "s8", schemes=("s8",), min_cosine=0.0).path
    weights = _quantised_weights(legacy / "visual" / "model.onnx")
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) > 64
    assert not SCHEMES["s8"].faithful_everywhere


def test_unfaithful_model_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    dst = tmp_path / "int8"
    with pytest.raises(ModelUnavailable, match="not faithful enough") as err:
        quantize_model_dir(tiny_model_dir(), dst, min_cosine=1.0)
    assert err.value.details["threshold"] == 1.0 and err.value.details["image_min"] < 1.0
    assert not dst.exists() and not list(tmp_path.iterdir())
    # An existing copy survives a refused run.
    quantize_model_dir(tiny_model_dir(), dst, min_cosine=0.0)
    before = (dst / "config.json").read_text()
    with pytest.raises(ModelUnavailable):
        quantize_model_dir(tiny_model_dir(), dst, min_cosine=1.0)
    assert (dst / "config.json").read_text() == before


def test_unknown_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="unknown int8 scheme"):
        quantize_model_dir(tiny_model_dir(), tmp_path / "x", schemes=("fp4",))


def test_status_shows_precision_and_fidelity(tmp_path: Path) -> None:
    done = quantize_model_dir(tiny_model_dir(), tmp_path / "int8", min_cosine=MIN_COSINE)
    status = ClipEncoder(done.path, model_id="t", precision="int8").status()
    assert status["precision"] == "int8"
    assert status["int8"]["cosine_to_fp32"]["image_min"] >= MIN_COSINE
    assert "int8_warning" not in status


X86_NO_VNNI = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
X86_VNNI = "model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 asimddp i8mm\nCPU implementer\t: 0x41\n"


def test_cpu_features() -> None:
    assert parse_cpuinfo(X86_NO_VNNI) == ("AMD EPYC 7B12", ["AVX2"])
    assert parse_cpuinfo(X86_VNNI) == ("Intel Xeon", ["AVX2", "AVX-512", "VNNI", "AMX"])
    assert parse_cpuinfo(ARM)[1] == ["NEON", "DOTPROD", "I8MM"]
    assert u8s8_saturates(("AVX2",)) and u8s8_saturates(("AVX2", "AVX-512"))
    assert not u8s8_saturates(("AVX2", "AVX-512", "VNNI")) and not u8s8_saturates(("NEON", "DOTPROD"))


def test_legacy_int8_model_warns_on_a_cpu_that_saturates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = quantize_model_dir(tiny_model_dir(), tmp_path / "s8", schemes=("s8",), min_cosine=0.0).path
    config = json.loads((legacy / "config.json").read_text())
    del config["quantization"]  # as written before this record existed
    (legacy / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(int8, "cpu_description", lambda: ("AMD EPYC", ("AVX2",)))
    status = ClipEncoder(legacy, model_id="t", precision="int8").status()
    assert "saturate" in status["int8_warning"] and "clipsearch models quantize" in status["int8_warning"]
    monkeypatch.setattr(int8, "cpu_description", lambda: ("Xeon", ("AVX2", "AVX-512", "VNNI")))
    assert "int8_warning" not in ClipEncoder(legacy, model_id="t", precision="int8").status()
