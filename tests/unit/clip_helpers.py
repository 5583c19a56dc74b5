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
