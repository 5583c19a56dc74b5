"""Dynamic int8 quantisation of a model directory, checked against fp32 before it is written.

Weights of MatMul and Gemm are quantised; activations are quantised at run time to uint8. Every scheme that
clipsearch writes is faithful on every CPU, not only on the one that quantised it:

- ``s8-reduced``: int8 weights in [-64, 64] (``reduce_range``), per output channel. A pair of u8*s8
  products is at most 2*255*64 = 32640 < 32767, so the int16 sums of the U8S8 kernels of x86 CPUs without
  VNNI (AVX2, AVX-512 without VNNI) cannot saturate; with VNNI or on Arm nothing saturates anyway. The fast
  scheme: U8S8 kernels (VNNI where present).
- ``u8u8``: uint8 weights, per output channel. ONNX Runtime runs U8U8 kernels that widen to int16 before
  multiplying (x86) or use UDOT (Arm): nothing saturates anywhere, and it keeps one more bit of weight
  precision, at about a third of the U8S8 speed on a VNNI CPU.
- ``s8`` (legacy, what clipsearch wrote before): full-range int8 weights. On x86 CPUs with AVX2 or AVX-512
  and no VNNI the U8S8 kernels saturate (cosine to fp32 down to 0.98 on ViT-B/32). Kept for the benchmark.

Each tower gets the first scheme of ``schemes`` whose cosine to fp32 on the bundled probe photos (visual)
or prompts (textual) reaches ``min_cosine``. A text tower that none reaches stays fp32 (text runs one query
at a time, so int8 buys little there); an image tower that none reaches means nothing is written. The
result is a complete model directory (configs and tokenizer copied), written atomically; ``config.json``
records each tower's scheme, the figures and the CPU they were measured on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from indexer.errors import ModelUnavailable
from indexer.model.cpu import cpu_description
from indexer.model.encoder import ClipEncoder
from indexer.model.files import REQUIRED_FILES, validate_model_dir

log = logging.getLogger(__name__)

_LARGE_MODEL_BYTES = 1_800_000_000  # protobuf's 2 GB limit: keep weights in an external file above this
PROBE_DIR = Path(__file__).with_name("probe")
PROBE_TEXTS = (
    "a photo of a cat",
    "a diagram",
    "two people on a beach at sunset",
    "a red car parked in the street",
    "an astronaut in a white suit",
    "a cup of coffee on a wooden table",
    "the night sky full of stars",
    "a close-up of a human eye",
    "a rocket on the launch pad",
    "ein Hund im Schnee",
    "une tasse de café",
    "東京の夜景",
)


@dataclass(frozen=True)
class Scheme:
    name: str
    weights: str  # "uint8" or "int8"
    per_channel: bool
    reduce_range: bool
    faithful_everywhere: bool


SCHEMES = {
    s.name: s
    for s in (
        Scheme("s8-reduced", "int8", per_channel=True, reduce_range=True, faithful_everywhere=True),
        Scheme("u8u8", "uint8", per_channel=True, reduce_range=False, faithful_everywhere=True),
        Scheme("s8", "int8", per_channel=False, reduce_range=False, faithful_everywhere=False),
    )
}
# Fastest first: each tower takes the first that is faithful on the probe set.
DEFAULT_SCHEMES = ("s8-reduced", "u8u8")


@dataclass(frozen=True)
class Fidelity:
    """Cosine of int8 to fp32 embeddings, over the probe photos and prompts."""

    image_min: float
    image_median: float
    text_min: float
    text_median: float

    @property
    def worst(self) -> float:
        return min(self.image_min, self.text_min)


@dataclass(frozen=True)
class Quantized:
    """What ``quantize_model_dir`` wrote."""

    path: Path
    fidelity: Fidelity
    towers: dict[str, str]  # tower -> the scheme it was quantised with, or "fp32"


class _DropPreprocessHint(logging.Filter):
    """onnxruntime logs a pre-processing hint on the root logger for every model (pre-processing needs sympy
    and changes nothing for these graphs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def probe_images() -> list[bytes]:
    """The bundled probe photos (six JPEGs, short side 256)."""
    return [p.read_bytes() for p in sorted(PROBE_DIR.glob("*.jpg"))]


def _cosines(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.asarray(
        (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)), dtype=np.float64
    )


def _embed_probe(model_dir: Path, precision: str, tower: str, threads: int) -> NDArray[np.float32]:
    """One tower's vectors of the probe set: photos through the full decode and preprocess path, or texts."""
    enc = ClipEncoder(model_dir, model_id="fidelity-probe", precision=precision, threads=threads)
    try:
        if tower == "textual":
            return enc.encode_texts(list(PROBE_TEXTS))[0]
        out = enc.embed_image_bytes(probe_images(), max_pixels=10**9)
        bad = [o.error for o in out if o.vector is None]
        if bad:
            raise ModelUnavailable(f"probe photo failed to embed: {bad[0]}", {"path": str(model_dir)})
        return np.stack([np.asarray(o.vector, dtype=np.float32) for o in out])
    finally:
        enc.close()
        enc.unload()


def _min_median(cos: NDArray[np.float64]) -> tuple[float, float]:
    return float(cos.min()), float(np.median(cos))


def _quantize_tower(model: Path, out: Path, scheme: Scheme) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.unlink(missing_ok=True)
    quantize_dynamic(
        model,
        out,
        op_types_to_quantize=["MatMul", "Gemm"],
        weight_type=QuantType.QUInt8 if scheme.weights == "uint8" else QuantType.QInt8,
        per_channel=scheme.per_channel,
        reduce_range=scheme.reduce_range,
        use_external_data_format=model.stat().st_size > _LARGE_MODEL_BYTES,
    )


def quantization_record(fidelity: Fidelity, towers: dict[str, str]) -> dict[str, Any]:
    """What ``config.json`` keeps under ``quantization`` (and ``/health`` shows)."""
    import onnxruntime

    cpu, features = cpu_description()
    return {
        "towers": towers,
        "faithful_on_every_cpu": all(t == "fp32" or SCHEMES[t].faithful_everywhere for t in towers.values()),
        "cosine_to_fp32": {k: round(v, 6) for k, v in asdict(fidelity).items()},
        "measured_on": {"cpu": cpu, "features": list(features), "onnxruntime": onnxruntime.__version__},
    }


def quantize_model_dir(
    src: Path,
    dst: Path,
    *,
    schemes: Sequence[str] = DEFAULT_SCHEMES,
    min_cosine: float = 0.999,
    threads: int = 1,
) -> Quantized:
    """Write the int8 copy of ``src`` to ``dst``; return where, with its measured fidelity and towers.

    Raises ModelUnavailable, leaving ``dst`` as it was, when no scheme brings the image tower's cosine to
    fp32 on the probe photos up to ``min_cosine``.
    """
    unknown = [name for name in schemes if name not in SCHEMES]
    if unknown or not schemes:
        raise ModelUnavailable(f"unknown int8 scheme {unknown or schemes!r}", {"schemes": sorted(SCHEMES)})
    validate_model_dir(src)
    hint_filter = _DropPreprocessHint()
    logging.getLogger().addFilter(hint_filter)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for name in REQUIRED_FILES:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, tmp / name)
        towers: dict[str, str] = {}
        figures: dict[str, tuple[float, float]] = {}
        for tower in ("visual", "textual"):
            reference = _embed_probe(src, "fp32", tower, threads)
            model = tmp / tower / "model.onnx"
            for name in schemes:
                log.info("quantising %s with %s", src / tower / "model.onnx", name)
                _quantize_tower(src / tower / "model.onnx", model, SCHEMES[name])
                cos = _cosines(reference, _embed_probe(tmp, "int8", tower, threads))
                figures[tower] = _min_median(cos)
                log.info("%s %s: cosine to fp32 min %.5f", tower, name, figures[tower][0])
                if figures[tower][0] >= min_cosine:
                    towers[tower] = name
                    break
            else:
                if tower == "visual":
                    raise ModelUnavailable(
                        f"int8 model of {src} is not faithful enough: image cosine to fp32 is "
                        f"{figures[tower][0]:.5f} with {schemes[-1]}, below INT8_MIN_COSINE={min_cosine}; "
                        "nothing was written",
                        {
                            "path": str(src),
                            "threshold": min_cosine,
                            "schemes": list(schemes),
                            "image_min": figures[tower][0],
                        },
                    )
                log.warning("int8 text tower below %s with every scheme; it stays fp32", min_cosine)
                model.unlink()
                shutil.copyfile(src / tower / "model.onnx", model)
                towers[tower], figures[tower] = "fp32", (1.0, 1.0)
        fidelity = Fidelity(*figures["visual"], *figures["textual"])
        config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
        config["precision"] = "int8"
        config["quantization"] = quantization_record(fidelity, towers)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if dst.exists():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(dst)
    except ModelUnavailable:
        raise
    except Exception as exc:  # onnx / onnxruntime raise assorted untyped errors
        raise ModelUnavailable(f"quantisation of {src} failed: {exc}", {"path": str(src)}) from exc
    finally:
        logging.getLogger().removeFilter(hint_filter)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Quantized(dst, fidelity, towers)
