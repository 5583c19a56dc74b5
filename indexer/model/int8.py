"""Whether an int8 model may drift from fp32 on this CPU."""

from __future__ import annotations

from typing import Any

from indexer.model.cpu import cpu_description, u8s8_saturates


def int8_warning(precision: str, quantization: dict[str, Any] | None) -> str | None:
    """Why an int8 model may drift from fp32 on this CPU, or None. ``quantization`` is the record that
    ``clipsearch models quantize`` writes into config.json (None for a model quantised before it existed)."""
    if precision != "int8":
        return None
    if quantization is not None and quantization.get("faithful_on_every_cpu"):
        return None
    cpu, features = cpu_description()
    if not u8s8_saturates(features):
        return None
    return (
        f"this int8 model has full-range int8 weights, whose kernels saturate on this CPU ({cpu}: AVX2 "
        "without VNNI) and drift from fp32; quantise it again with `clipsearch models quantize`"
    )
