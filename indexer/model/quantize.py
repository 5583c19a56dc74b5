"""Dynamic int8 quantisation of a model directory, checked against fp32 before it is written.

Weights of MatMul and Gemm are quantised; activations are quantised at run time to uint8. The default
scheme is chosen to be faithful on every CPU, not only on the one that quantised it:

- ``u8u8``: uint8 weights, per output channel. ONNX Runtime runs U8U8 kernels that widen to int16 before
  multiplying (AVX2, AVX-512) or use UDOT (Arm): nothing saturates anywhere.
- ``s8-reduced``: int8 weights in [-64, 64] (``reduce_range``), per channel. A pair of u8*s8 products is at
  most 2*255*64 = 32640 < 32767, so the int16 sums of the non-VNNI U8S8 kernels cannot saturate either.
- ``s8`` (legacy, what clipsearch wrote before): full-range int8 weights. Fast, but on x86 CPUs with AVX2 or
  AVX-512 and no VNNI the U8S8 kernels saturate (cosine to fp32 down to 0.98 on ViT-B/32). Kept for the
  benchmark only.

The result is a complete model directory (configs and tokenizer copied), written atomically, and only if
the image and text cosine to fp32 on the bundled probe photos and prompts reach ``min_cosine``. A text tower
below it stays fp32 (text runs one query at a time, so int8 buys little there); an image tower below it
means nothing is written. ``config.json`` records the scheme, the towers' precisions, the figures and the
CPU they were measured on.
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
        Scheme("u8u8", "uint8", per_channel=True, reduce_range=False, faithful_everywhere=True),
        Scheme("s8-reduced", "int8", per_channel=True, reduce_range=True, faithful_everywhere=True),
        Scheme("s8", "int8", per_channel=False, reduce_range=False, faithful_everywhere=False),
    )
}
DEFAULT_SCHEME = "u8u8"


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
    towers: dict[str, str]  # tower -> "int8" or "fp32"


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


def measure_fidelity(
    fp32_dir: Path,
    int8_dir: Path,
    *,
    images: Sequence[bytes] | None = None,
    texts: Sequence[str] = PROBE_TEXTS,
    threads: int = 1,
) -> Fidelity:
    """Image and text cosine of the int8 model to the fp32 one (full decode and preprocess path)."""
    from indexer.model.encoder import ClipEncoder

    data = list(images) if images is not None else probe_images()
    vectors: list[tuple[NDArray[np.float32], NDArray[np.float32]]] = []
    for path, precision in ((fp32_dir, "fp32"), (int8_dir, "int8")):
        enc = ClipEncoder(path, model_id="fidelity-probe", precision=precision, threads=threads)
        try:
            out = enc.embed_image_bytes(data, max_pixels=10**9)
            bad = [o.error for o in out if o.vector is None]
            if bad:
                raise ModelUnavailable(f"probe photo failed to embed: {bad[0]}", {"path": str(path)})
            image = np.stack([np.asarray(o.vector, dtype=np.float32) for o in out])
            vectors.append((image, enc.encode_texts(list(texts))[0]))
        finally:
            enc.close()
            enc.unload()
    (fi, ft), (qi, qt) = vectors
    ci, ct = _cosines(fi, qi), _cosines(ft, qt)
    return Fidelity(
        image_min=float(ci.min()),
        image_median=float(np.median(ci)),
        text_min=float(ct.min()),
        text_median=float(np.median(ct)),
    )


def _quantize_tower(model: Path, out: Path, scheme: Scheme) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        model,
        out,
        op_types_to_quantize=["MatMul", "Gemm"],
        weight_type=QuantType.QUInt8 if scheme.weights == "uint8" else QuantType.QInt8,
        per_channel=scheme.per_channel,
        reduce_range=scheme.reduce_range,
        use_external_data_format=model.stat().st_size > _LARGE_MODEL_BYTES,
    )


def quantization_record(scheme: Scheme, fidelity: Fidelity, towers: dict[str, str]) -> dict[str, Any]:
    """What ``config.json`` keeps under ``quantization`` (and ``/health`` shows)."""
    import onnxruntime

    cpu, features = cpu_description()
    return {
        "scheme": scheme.name,
        "towers": towers,
        "weights": scheme.weights,
        "per_channel": scheme.per_channel,
        "reduce_range": scheme.reduce_range,
        "faithful_on_every_cpu": scheme.faithful_everywhere,
        "cosine_to_fp32": {k: round(v, 6) for k, v in asdict(fidelity).items()},
        "measured_on": {"cpu": cpu, "features": list(features), "onnxruntime": onnxruntime.__version__},
    }


def quantize_model_dir(
    src: Path,
    dst: Path,
    *,
    scheme: str = DEFAULT_SCHEME,
    min_cosine: float = 0.999,
    threads: int = 1,
) -> Quantized:
    """Write the int8 copy of ``src`` to ``dst``; return where, with its measured fidelity and towers.

    Raises ModelUnavailable, leaving ``dst`` as it was, when the image or text cosine to fp32 on the probe
    set is below ``min_cosine``.
    """
    if scheme not in SCHEMES:
        raise ModelUnavailable(f"unknown int8 scheme {scheme!r}", {"schemes": sorted(SCHEMES)})
    chosen = SCHEMES[scheme]
    validate_model_dir(src)
    hint_filter = _DropPreprocessHint()
    logging.getLogger().addFilter(hint_filter)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for name in REQUIRED_FILES:
            if name.endswith(".onnx"):
                continue
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, tmp / name)
        for tower in ("visual", "textual"):
            log.info("quantising %s (%s)", src / tower / "model.onnx", chosen.name)
            _quantize_tower(src / tower / "model.onnx", tmp / tower / "model.onnx", chosen)
        towers = {"visual": "int8", "textual": "int8"}
        fidelity = measure_fidelity(src, tmp, threads=threads)
        if fidelity.text_min < min_cosine <= fidelity.image_min:
            # The text tower runs one query at a time (latency, not throughput): keep it exact rather than
            # unfaithful, and say so. Small text towers quantise worst (per-tensor activation scales).
            log.warning(
                "int8 text tower: cosine %.5f < %s; keeping the text tower in fp32",
                fidelity.text_min,
                min_cosine,
            )
            shutil.copyfile(src / "textual" / "model.onnx", tmp / "textual" / "model.onnx")
            towers["textual"] = "fp32"
            fidelity = measure_fidelity(src, tmp, threads=threads)
        if fidelity.worst < min_cosine:
            raise ModelUnavailable(
                f"int8 model of {src} is not faithful enough: cosine to fp32 is {fidelity.image_min:.5f} "
                f"(images) and {fidelity.text_min:.5f} (texts), below INT8_MIN_COSINE={min_cosine}; "
                "nothing was written",
                {"path": str(src), "threshold": min_cosine, "scheme": chosen.name, **asdict(fidelity)},
            )
        config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
        config["precision"] = "int8"
        config["quantization"] = quantization_record(chosen, fidelity, towers)
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
