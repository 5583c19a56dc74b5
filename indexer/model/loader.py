"""Which encoder a process runs: resolve the model directory, pick fp32 or its int8 copy, build the
``ClipEncoder``.

Both the encoder and int8 quantisation (which embeds its probe set with an encoder) sit below this module,
so neither imports the other through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexer.errors import InvalidInput, ModelUnavailable
from indexer.media.decoder import decoder_for
from indexer.model.catalogue import TINY_MODEL_ID
from indexer.model.encoder import ClipEncoder
from indexer.model.files import ResolvedModel, missing_files, quantized_dir, resolve_model
from indexer.model.quantize import quantize_model_dir
from indexer.settings import Settings


def load_encoder(
    settings: Settings,
    *,
    allow_download: bool = False,
    model_id: str | None = None,
    model_dir: Path | None = None,
    precision: str | None = None,
    providers: Sequence[str] | None = None,
    batch_size: int | None = None,
    lanes: int = 1,
) -> ClipEncoder:
    """Build the encoder for ``settings`` (sessions load lazily).

    Resolution: ``model_dir`` / MODEL_DIR, else the bundled tiny model for its id, else the Hub cache for
    MODEL_ID. Offline unless ``allow_download``; a missing model raises ModelUnavailable saying how to pull
    it. With precision int8 the quantised copy from ``clipsearch models quantize`` is used (made on the fly
    for the tiny test model).
    """
    resolved = resolve_model(settings, allow_download=allow_download, model_id=model_id, model_dir=model_dir)
    precision = precision or settings.model_precision
    if precision not in ("fp32", "int8"):
        raise InvalidInput(f"unknown precision {precision!r} (fp32 or int8)", {"precision": precision})
    path = resolved.path
    if precision == "int8":
        path = _int8_dir(settings, resolved)
    return ClipEncoder(
        path,
        model_id=resolved.model_id,
        precision=precision,
        threads=settings.onnx_threads,
        providers=providers,
        batch_size=batch_size,
        source=resolved.source,
        lanes=lanes,
        decoder=decoder_for(settings),
    )


def tiny_encoder(settings: Settings, **kwargs: Any) -> ClipEncoder:
    """The bundled random-weight test model, explicitly (what ``up`` falls back to)."""
    return load_encoder(settings, model_id=TINY_MODEL_ID, **kwargs)


def _int8_dir(settings: Settings, resolved: ResolvedModel) -> Path:
    qdir = quantized_dir(settings, resolved.model_id)
    if not missing_files(qdir):
        return qdir
    if resolved.is_test_model:  # small enough to quantise on the spot
        return quantize_model_dir(resolved.path, qdir, min_cosine=settings.int8_min_cosine).path
    raise ModelUnavailable(
        f"no int8 copy of model {resolved.model_id!r}; create it with "
        f"`clipsearch models quantize {resolved.model_id}` or set MODEL_PRECISION=fp32",
        {"model_id": resolved.model_id, "hint": f"clipsearch models quantize {resolved.model_id}"},
    )
