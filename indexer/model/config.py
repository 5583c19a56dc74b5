"""What a model directory's config.json says, read once: the embedding width, the text context, the logit
policy and, for an int8 copy, its quantisation record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.errors import ModelUnavailable
from indexer.model.catalogue import get_spec
from indexer.model.files import read_config
from indexer.model.logits import logit_params


@dataclass(frozen=True)
class ModelConfig:
    dim: int
    context_length: int
    logit_scale: float
    logit_bias: float | None
    quantization: dict[str, Any] | None  # int8 only: what `clipsearch models quantize` recorded


def model_config(model_dir: Path, model_id: str, precision: str) -> ModelConfig:
    """Parse ``model_dir/config.json``; ModelUnavailable when it is unreadable or lacks ``embed_dim``."""
    config = read_config(model_dir)
    try:
        dim = int(config["embed_dim"])
        context_length = int(config.get("text_cfg", {}).get("context_length", 77))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelUnavailable(f"bad {model_dir / 'config.json'}: {exc}", {"path": str(model_dir)}) from exc
    scale, bias = logit_params(config, get_spec(model_id))
    quantization = config.get("quantization")
    return ModelConfig(
        dim=dim,
        context_length=context_length,
        logit_scale=scale,
        logit_bias=bias,
        quantization=quantization if precision == "int8" and isinstance(quantization, dict) else None,
    )
