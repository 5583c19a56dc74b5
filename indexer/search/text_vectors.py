"""Text query vectors: an LRU of text embeddings (a repeated query skips the encoder) and the weighted
combination of positive and negative queries."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from cachetools import LRUCache
from numpy.typing import NDArray

from indexer.errors import InvalidInput

Encode = Callable[[list[str]], NDArray[np.float32]]


class TextEmbeddingCache:
    """Text embeddings by (model id, text), least recently used out first; safe across threads."""

    def __init__(self, maxsize: int = 2048) -> None:
        self.maxsize = maxsize
        self._entries: LRUCache[tuple[str, str], NDArray[np.float32]] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe by themselves
        self.hits = 0
        self.misses = 0

    def get_many(self, model_id: str, texts: list[str], encode: Encode) -> tuple[NDArray[np.float32], bool]:
        """Vectors for `texts`; the flag says whether every one came from the cache."""
        with self._lock:
            found = {t: v for t in texts if (v := self._entries.get((model_id, t))) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            vectors = encode(missing)  # outside the lock: other queries go on meanwhile
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    self._entries[(model_id, text)] = vector
                    found[text] = vector
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        return np.stack([found[t] for t in texts]), not missing


def combine(vectors: NDArray[np.float32], weights: list[float]) -> NDArray[np.float32]:
    """The weighted sum of unit text vectors, normalised: positives pull, negatives push."""
    combined = (np.asarray(weights, dtype=np.float32)[:, None] * vectors).sum(axis=0)
    norm = float(np.linalg.norm(combined))
    if norm < 1e-8:
        raise InvalidInput("the weighted queries cancel out; change the weights")
    result: NDArray[np.float32] = (combined / norm).astype(np.float32)
    return result
