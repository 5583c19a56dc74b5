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

# Families: how the text is tokenised and how zero-shot scores become probabilities.
#   clip          CLIP BPE; softmax over the classes at the logit scale (OpenAI/LAION ViTs and ResNets)
#   siglip        sentencepiece (T5 / Gemma); sigmoid(logit_scale * cos + logit_bias) per class
#   multilingual  XLM-RoBERTa sentencepiece text tower; softmax, as CLIP (trained with the CLIP loss)
#   nllb-siglip   NLLB text tower trained with the SigLIP loss; sigmoid
SIGMOID_FAMILIES: Final = frozenset({"siglip", "nllb-siglip"})
# ViT-B-16-SigLIP (webli)'s learned values (big_vision's SigLIP demo: t = 117.33, b = -12.93). Used for a
# sigmoid model whose own learned values are neither in its config.json nor in the catalogue; the ONNX
# exports do not carry them. Set "logit_scale" / "logit_bias" in the model's config.json to override.
SIGLIP_FALLBACK_SCALE: Final = 117.33
SIGLIP_FALLBACK_BIAS: Final = -12.93


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    architecture: str  # open_clip model name
    pretrained: str  # open_clip pretrained tag
    image_size: int
    embed_dim: int
    context_length: int = 77
    logit_scale: float = 100.0  # learned temperature, clamped at 100 in all the CLIP checkpoints
    approx_size_mb: int = 0  # both towers, fp32 ONNX
    bundled: bool = False  # ships inside the package (the tiny test models)
    family: str = "clip"  # see SIGMOID_FAMILIES above
    logit_bias: float | None = None  # sigmoid families: the learned bias, when known
    bundled_dir: str = "tiny"  # bundled only: the directory under indexer/model/

    @property
    def scoring(self) -> str:
        """``softmax`` over the classes (CLIP loss) or an independent ``sigmoid`` per class (SigLIP loss)."""
        return "sigmoid" if self.family in SIGMOID_FAMILIES else "softmax"

    @property
    def repo_id(self) -> str:
        return f"{HUB_ORGANISATION}/{self.model_id}"

    @property
    def source(self) -> str:
        return "bundled" if self.bundled else self.pretrained.split("_")[0].split("-")[0]


def _spec(arch: str, tag: str, image_size: int, embed_dim: int, mb: int) -> ModelSpec:
    return ModelSpec(f"{arch}__{tag}", arch, tag, image_size, embed_dim, approx_size_mb=mb)


def _siglip(
    arch: str, image_size: int, embed_dim: int, mb: int, scale: float | None = None, bias: float | None = None
) -> ModelSpec:
    """A SigLIP / SigLIP 2 export (``<arch>__webli``): 64 tokens, sigmoid scoring."""
    return ModelSpec(
        f"{arch}__webli",
        arch,
        "webli",
        image_size,
        embed_dim,
        context_length=64,
        logit_scale=scale if scale is not None else SIGLIP_FALLBACK_SCALE,
        approx_size_mb=mb,
        family="siglip",
        logit_bias=bias,
    )


def _multilingual(
    model_id: str, arch: str, tag: str, image_size: int, embed_dim: int, mb: int, family: str
) -> ModelSpec:
    sigmoid = family in SIGMOID_FAMILIES
    return ModelSpec(
        model_id,
        arch,
        tag,
        image_size,
        embed_dim,
        logit_scale=SIGLIP_FALLBACK_SCALE if sigmoid else 100.0,
        approx_size_mb=mb,
        family=family,
    )


def _bundled(
    model_id: str, architecture: str, directory: str, family: str, embed_dim: int, mb: int
) -> ModelSpec:
    """A tiny random-weight model inside the package; its config.json holds its logit scale (and bias)."""
    return ModelSpec(
        model_id,
        architecture,
        "random",
        224,
        embed_dim,
        context_length=64 if family == "siglip" else 77,
        logit_scale=1 / 0.07,
        approx_size_mb=mb,
        bundled=True,
        family=family,
        logit_bias=-10.0 if family == "siglip" else None,
        bundled_dir=directory,
    )


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
        # SigLIP (sigmoid loss, squash resize, T5 sentencepiece, canonicalised text) and SigLIP 2 (Gemma
        # tokenizer). Sizes are approximate (fp32, both towers, from the parameter counts).
        _siglip("ViT-B-16-SigLIP", 224, 768, 820, SIGLIP_FALLBACK_SCALE, SIGLIP_FALLBACK_BIAS),
        _siglip("ViT-B-16-SigLIP-256", 256, 768, 820),
        _siglip("ViT-B-16-SigLIP-384", 384, 768, 820),
        _siglip("ViT-B-16-SigLIP-512", 512, 768, 820),
        _siglip("ViT-B-16-SigLIP-i18n-256", 256, 768, 1500),
        _siglip("ViT-L-16-SigLIP-256", 256, 1024, 2600),
        _siglip("ViT-L-16-SigLIP-384", 384, 1024, 2600),
        _siglip("ViT-SO400M-14-SigLIP-384", 384, 1152, 3500),
        _siglip("ViT-B-16-SigLIP2", 224, 768, 1500),
        _siglip("ViT-B-32-SigLIP2-256", 256, 768, 1500),
        _siglip("ViT-L-16-SigLIP2-256", 256, 1024, 3500),
        _siglip("ViT-L-16-SigLIP2-384", 384, 1024, 3500),
        _siglip("ViT-L-16-SigLIP2-512", 512, 1024, 3500),
        _siglip("ViT-SO400M-14-SigLIP2", 224, 1152, 4500),
        _siglip("ViT-SO400M-14-SigLIP2-378", 378, 1152, 4500),
        _siglip("ViT-SO400M-16-SigLIP2-256", 256, 1152, 4500),
        _siglip("ViT-SO400M-16-SigLIP2-384", 384, 1152, 4500),
        _siglip("ViT-SO400M-16-SigLIP2-512", 512, 1152, 4500),
        _siglip("ViT-gopt-16-SigLIP2-256", 256, 1536, 7500),
        _siglip("ViT-gopt-16-SigLIP2-384", 384, 1536, 7500),
        # Multilingual text towers (queries in any language): XLM-RoBERTa (CLIP loss) and NLLB (SigLIP loss).
        _multilingual(
            "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k",
            "xlm-roberta-base-ViT-B-32",
            "laion5b_s13b_b90k",
            224,
            512,
            1500,
            "multilingual",
        ),
        _multilingual(
            "XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k",
            "xlm-roberta-large-ViT-H-14",
            "frozen_laion5b_s13b_b90k",
            224,
            1024,
            4800,
            "multilingual",
        ),
        _multilingual(
            "nllb-clip-base-siglip__v1", "nllb-clip-base-siglip", "v1", 384, 768, 2000, "nllb-siglip"
        ),
        _multilingual(
            "nllb-clip-base-siglip__mrl", "nllb-clip-base-siglip", "mrl", 384, 768, 2000, "nllb-siglip"
        ),
        _multilingual(
            "nllb-clip-large-siglip__v1", "nllb-clip-large-siglip", "v1", 384, 1152, 4800, "nllb-siglip"
        ),
        _multilingual(
            "nllb-clip-large-siglip__mrl", "nllb-clip-large-siglip", "mrl", 384, 1152, 4800, "nllb-siglip"
        ),
        # Random weights, real architecture families: tests and the no-model fallback (tiny-test-clip).
        _bundled(TINY_MODEL_ID, "ViT (tiny)", "tiny", "clip", 32, 8),
        _bundled("tiny-test-rn", "ModifiedResNet (tiny)", "tiny-rn", "clip", 32, 7),
        _bundled("tiny-test-siglip", "SigLIP ViT (tiny)", "tiny-siglip", "siglip", 64, 2),
        _bundled("tiny-test-xlmr", "ViT + XLM-RoBERTa (tiny)", "tiny-xlmr", "multilingual", 32, 2),
    )
}
BUNDLED_MODEL_IDS: Final = frozenset(spec.model_id for spec in CATALOGUE.values() if spec.bundled)


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
