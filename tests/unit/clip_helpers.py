"""Shared helpers for the model tests: the fixtures open_clip produced and one tiny encoder per process."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from indexer.model.encoder import ClipEncoder
from indexer.model.files import tiny_model_dir

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = FIXTURES / "images"


@lru_cache(maxsize=1)
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "reference.json").read_text(encoding="utf-8"))
    return data


def image_embeddings() -> np.ndarray:
    return np.load(FIXTURES / "image_embeddings.npy")


def text_embeddings() -> np.ndarray:
    return np.load(FIXTURES / "text_embeddings.npy")


def text_tokens() -> np.ndarray:
    return np.load(FIXTURES / "text_tokens.npy")


@lru_cache(maxsize=1)
def tiny_encoder() -> ClipEncoder:
    return ClipEncoder(
        tiny_model_dir(), model_id="tiny-test-clip", threads=1, prep_workers=1, source="bundled"
    )


# ---------------------------------------------------------------------------------------- other families
# Tiny random-weight models of the other open_clip families, with open_clip's outputs on the same weights
# (scripts/make_tiny_model.py --no-tiny --family all): rn (ModifiedResNet), siglip, xlmr (XLM-RoBERTa text).
FAMILIES = {"rn": "tiny-test-rn", "siglip": "tiny-test-siglip", "xlmr": "tiny-test-xlmr"}


def family_fixtures(family: str) -> Path:
    return FIXTURES / "families" / family


@lru_cache(maxsize=4)
def family_reference(family: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (family_fixtures(family) / "reference.json").read_text(encoding="utf-8")
    )
    return data


@lru_cache(maxsize=4)
def family_encoder(family: str) -> ClipEncoder:
    model_id = FAMILIES[family]
    return ClipEncoder(
        tiny_model_dir(model_id), model_id=model_id, threads=1, prep_workers=1, source="bundled"
    )
