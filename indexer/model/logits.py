"""How a model's similarities become probabilities: the logit scale, and for SigLIP-loss models the bias."""

from __future__ import annotations

import logging
from typing import Any

from indexer.model.catalogue import SIGLIP_FALLBACK_BIAS, SIGLIP_FALLBACK_SCALE, ModelSpec

log = logging.getLogger(__name__)


def logit_params(config: dict[str, Any], spec: ModelSpec | None) -> tuple[float, float | None]:
    """(logit_scale, logit_bias or None) for a model: the learned values its config.json records (our exports
    do), else the catalogue's. A SigLIP-loss model (``init_logit_bias`` in its open_clip config, or a sigmoid
    family in the catalogue) always gets a bias, so its probabilities are sigmoids, never a softmax."""
    scale = config.get("logit_scale")
    bias = config.get("logit_bias")
    sigmoid = (
        bias is not None or "init_logit_bias" in config or (spec is not None and spec.scoring == "sigmoid")
    )
    if scale is None:
        scale = spec.logit_scale if spec is not None else (SIGLIP_FALLBACK_SCALE if sigmoid else 100.0)
    if sigmoid and bias is None:
        bias = spec.logit_bias if spec is not None and spec.logit_bias is not None else None
        if bias is None:
            bias = SIGLIP_FALLBACK_BIAS
            log.warning(
                "no learned logit_bias known for %s: using ViT-B-16-SigLIP's (%s); set logit_scale and "
                "logit_bias in its config.json for exact probabilities",
                spec.model_id if spec is not None else "this model",
                bias,
            )
    return float(scale), (float(bias) if bias is not None else None)


def scoring(logit_bias: float | None) -> str:
    """How zero-shot scores become probabilities: ``softmax`` over the candidates at the logit scale
    (CLIP's contrastive loss) or ``sigmoid(logit_scale * cos + logit_bias)`` per candidate (SigLIP)."""
    return "softmax" if logit_bias is None else "sigmoid"
