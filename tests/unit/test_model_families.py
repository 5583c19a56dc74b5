"""Model families: catalogue entries, the tokenizer kinds, and each family's zero-shot probabilities."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipsearch.cli import main
from indexer.classify.scoring import References, predict, probabilities, sigmoid, softmax
from indexer.model.catalogue import CATALOGUE, SIGLIP_FALLBACK_BIAS, get_spec
from indexer.model.encoder import ClipEncoder
from indexer.model.files import tiny_model_dir
from indexer.model.tokenizer import ClipTokenizer
from tests.unit.clip_helpers import FAMILIES, family_encoder, tiny_encoder


@pytest.mark.parametrize(
    ("model_id", "family", "image_size", "dim", "context"),
    [
        ("ViT-B-16-SigLIP__webli", "siglip", 224, 768, 64),
        ("ViT-SO400M-14-SigLIP-384__webli", "siglip", 384, 1152, 64),
        ("ViT-B-16-SigLIP2__webli", "siglip", 224, 768, 64),
        ("XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k", "multilingual", 224, 512, 77),
        ("XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k", "multilingual", 224, 1024, 77),
        ("nllb-clip-base-siglip__v1", "nllb-siglip", 384, 768, 77),
        ("RN50__openai", "clip", 224, 1024, 77),
    ],
)
def test_catalogue_knows_the_families(
    model_id: str, family: str, image_size: int, dim: int, context: int
) -> None:
    spec = get_spec(model_id)
    assert spec is not None and spec.repo_id == f"immich-app/{model_id}"
    assert (spec.family, spec.image_size, spec.embed_dim, spec.context_length) == (
        family,
        image_size,
        dim,
        context,
    )
    assert spec.approx_size_mb > 0
    assert spec.scoring == ("sigmoid" if family in ("siglip", "nllb-siglip") else "softmax")


def test_models_list_shows_the_families(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json"]) == 0
    rows = {row["model_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["ViT-B-16-SigLIP-384__webli"]["scoring"] == "sigmoid"
    assert rows["XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k"]["family"] == "multilingual"
    for model_id in FAMILIES.values():
        assert rows[model_id]["path"] == str(tiny_model_dir(model_id))
    assert sum(1 for spec in CATALOGUE.values() if spec.family != "clip") >= 24


def test_each_bundled_family_loads_with_its_scoring() -> None:
    assert tiny_encoder().scoring == "softmax" and tiny_encoder().logit_bias is None
    assert family_encoder("rn").scoring == "softmax"
    assert family_encoder("xlmr").scoring == "softmax"
    siglip = family_encoder("siglip")
    assert siglip.scoring == "sigmoid" and siglip.logit_bias == pytest.approx(-10.0)
    assert siglip.status()["scoring"] == "sigmoid"
    assert siglip.preprocess_cfg.resize_mode == "squash" and siglip.preprocess_cfg.mean == (0.5, 0.5, 0.5)


def test_an_immich_style_siglip_export_without_learned_values_still_scores_with_a_sigmoid(
    tmp_path: Path,
) -> None:
    """Immich's config.json is open_clip's model config: ``init_logit_bias`` but no learned scale or bias."""
    export = tmp_path / "ViT-B-16-SigLIP-384__webli"
    shutil.copytree(tiny_model_dir("tiny-test-siglip"), export)
    config = json.loads((export / "config.json").read_text())
    for key in ("logit_scale", "logit_bias", "model_id"):
        config.pop(key)
    (export / "config.json").write_text(json.dumps(config))
    enc = ClipEncoder(export, model_id="ViT-B-16-SigLIP-384__webli")
    spec = get_spec("ViT-B-16-SigLIP-384__webli")
    assert spec is not None
    assert enc.scoring == "sigmoid" and enc.logit_bias == SIGLIP_FALLBACK_BIAS
    assert enc.logit_scale == spec.logit_scale
    known = ClipEncoder(export, model_id="ViT-B-16-SigLIP__webli")
    assert (known.logit_scale, known.logit_bias) == (117.33, -12.93)


def test_hf_tokenizers_pad_and_truncate_as_their_config_says() -> None:
    xlmr = ClipTokenizer.from_dir(tiny_model_dir("tiny-test-xlmr") / "textual", 77)
    assert xlmr.clean == "whitespace" and xlmr.pad_id == 1  # <pad>; case is kept
    batch = xlmr.encode(["Ein Foto", "ein foto", "", "кошка " * 100])
    assert batch.ids[0, 0] == 0 and (batch.ids[0] != batch.ids[1]).any()  # <s> first; cased
    assert batch.ids[2, :3].tolist() == [0, 2, 1]  # <s> </s> <pad>
    assert batch.truncated == [False, False, False, True] and batch.lengths[3] > 77
    assert batch.ids[3, 0] == 0 and batch.ids[3, -1] == 2  # special tokens kept when cut
    siglip = ClipTokenizer.from_dir(tiny_model_dir("tiny-test-siglip") / "textual", 64, clean="canonicalize")
    assert siglip.pad_id == 1  # SigLIP pads with </s>
    row = siglip.encode(["a cat"]).ids[0]
    assert row[-1] == 1 and 1 in row[:4].tolist()


def test_sigmoid_and_softmax_probabilities() -> None:
    scores = np.asarray([[0.30, 0.10, -0.20]], np.float32)
    soft = probabilities(scores, 100.0)
    assert soft.sum() == pytest.approx(1.0) and soft.argmax() == 0
    assert soft == pytest.approx(softmax(scores, 100.0))
    sig = probabilities(scores, 10.0, -10.0)
    expected = 1 / (1 + np.exp(-(10.0 * scores.astype(np.float64) - 10.0)))
    assert sig == pytest.approx(expected, rel=1e-6)
    assert sig.sum() < 0.01  # every class unlikely: independent sigmoids, not a distribution
    assert sigmoid(np.asarray([-1e6, 1e6]), 1.0, 0.0).tolist() == [0.0, 1.0]  # no overflow


def test_predict_uses_the_logit_bias() -> None:
    refs = References.build(["cat", "dog"], np.eye(4)[:2].astype(np.float32), [0, 1])
    query = np.asarray([[0.9, 0.1, 0.0, 0.0]], np.float32)
    [clip] = predict(query, refs, logit_scale=100.0)
    [siglip] = predict(query, refs, logit_scale=10.0, logit_bias=-5.0)
    assert clip.label == siglip.label == "cat"
    cos = float(query[0, 0] / np.linalg.norm(query))
    assert siglip.probability == pytest.approx(1 / (1 + np.exp(-(10.0 * cos - 5.0))), abs=1e-6)
    assert sum(r.probability for r in clip.ranked) == pytest.approx(1.0, abs=1e-5)
