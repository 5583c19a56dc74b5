"""What ``/health`` and ``clipsearch models`` show of the running encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import onnxruntime as ort

from indexer.model.config import ModelConfig
from indexer.model.logits import scoring
from indexer.model.sessions import OnnxModel


class Described(Protocol):
    """The parts of an encoder its status reads."""

    model_id: str
    model_dir: Path
    precision: str
    source: str
    config: ModelConfig
    int8_warning: str | None
    providers: list[str]
    threads: int

    @property
    def visual(self) -> OnnxModel: ...

    @property
    def textual(self) -> OnnxModel: ...

    @property
    def is_test_model(self) -> bool: ...

    @property
    def image_size(self) -> int: ...


def encoder_status(encoder: Described) -> dict[str, Any]:
    config = encoder.config
    provider = encoder.visual.provider or encoder.textual.provider
    return {
        "model_id": encoder.model_id,
        "precision": encoder.precision,
        **({"int8": config.quantization} if config.quantization else {}),
        **({"int8_warning": encoder.int8_warning} if encoder.int8_warning else {}),
        "is_test_model": encoder.is_test_model,
        "source": encoder.source,
        "model_dir": str(encoder.model_dir),
        "dim": config.dim,
        "scoring": scoring(config.logit_bias),
        "logit_scale": config.logit_scale,
        **({"logit_bias": config.logit_bias} if config.logit_bias is not None else {}),
        "image_size": encoder.image_size,
        "context_length": config.context_length,
        "loaded": {"visual": encoder.visual.loaded, "textual": encoder.textual.loaded},
        "provider": provider or encoder.providers[0],
        "providers": encoder.providers,
        "threads": encoder.threads,
        "onnxruntime_version": ort.__version__,
    }
