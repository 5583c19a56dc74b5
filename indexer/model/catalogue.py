"""The models clipsearch knows by name, with the Hugging Face repositories that hold their ONNX exports.

The ids and repositories are Immich's (``immich-app/<id>``), whose exports use the directory layout the
encoder reads (``visual/model.onnx``, ``textual/model.onnx``, ``config.json``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MODEL_ID: Final = "ViT-B-32__openai"
TINY_MODEL_ID: Final = "tiny-test-clip"
HUB_ORGANISATION: Final = "immich-app"


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    architecture: str  # open_clip model name
    pretrained: str  # open_clip pretrained tag
    image_size: int
    embed_dim: int
    context_length: int = 77
    logit_scale: float = 100.0  # learned temperature, clamped at 100 in all these checkpoints
    approx_size_mb: int = 0  # both towers, fp32 ONNX
    bundled: bool = False  # ships inside the package (the tiny test model)

    @property
    def repo_id(self) -> str:
        return f"{HUB_ORGANISATION}/{self.model_id}"

    @property
    def source(self) -> str:
        return "bundled" if self.bundled else self.pretrained.split("_")[0].split("-")[0]


def _spec(arch: str, tag: str, image_size: int, embed_dim: int, mb: int) -> ModelSpec:
    return ModelSpec(f"{arch}__{tag}", arch, tag, image_size, embed_dim, approx_size_mb=mb)


CATALOGUE: Final[dict[str, ModelSpec]] = {
    spec.model_id: spec
    for spec in (
        # The nine OpenAI CLIP checkpoints.
        _spec("RN50", "openai", 224, 1024, 400),
        _spec("RN101", "openai", 224, 512, 480),
        _spec("RN50x4", "openai", 288, 640, 700),
        _spec("RN50x16", "openai", 384, 768, 1200),
        _spec("RN50x64", "openai", 448, 1024, 2500),
        _spec("ViT-B-16", "openai", 224, 512, 600),
        _spec("ViT-B-32", "openai", 224, 512, 600),
        _spec("ViT-L-14", "openai", 224, 768, 1700),
        _spec("ViT-L-14-336", "openai", 336, 768, 1700),
        # A few open_clip LAION checkpoints.
        _spec("ViT-B-32", "laion2b-s34b-b79k", 224, 512, 600),
        _spec("ViT-B-16", "laion400m_e32", 224, 512, 600),
        _spec("ViT-B-16-plus-240", "laion400m_e32", 240, 640, 850),
        _spec("ViT-L-14", "laion2b-s32b-b82k", 224, 768, 1700),
        _spec("ViT-H-14", "laion2b-s32b-b79k", 224, 1024, 3900),
        # Random weights, real architecture family: tests and the no-model fallback.
        ModelSpec(
            TINY_MODEL_ID,
            "ViT (tiny)",
            "random",
            224,
            32,
            logit_scale=1 / 0.07,
            approx_size_mb=8,
            bundled=True,
        ),
    )
}


def get_spec(model_id: str) -> ModelSpec | None:
    return CATALOGUE.get(model_id)


def hub_repo_id(model_id: str) -> str:
    """The Hub repository for a model id: a catalogue entry, ``org/name`` as given, else Immich's naming."""
    spec = CATALOGUE.get(model_id)
    if spec is not None:
        return spec.repo_id
    if "/" in model_id:
        return model_id
    return f"{HUB_ORGANISATION}/{model_id}"
