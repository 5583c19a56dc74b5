"""Scorers: a class set (or classifier) ready to score vectors of its model, and a per-process cache of
them by version."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from cachetools import LRUCache
from numpy.typing import NDArray

from indexer.classify.scoring import Prediction, References, class_scores, predict
from indexer.classify.store import ClassSetRecord, ClassStore, Reference, RefKind
from indexer.errors import InvalidInput


@dataclass(frozen=True, eq=False)
class Scorer:
    """A class set (or classifier) ready to score vectors of its model."""

    record: ClassSetRecord
    refs: list[Reference]
    references: References

    def predict(
        self, vectors: NDArray[np.floating], top_k: int = 5, threshold: float | None = None
    ) -> list[Prediction]:
        return predict(
            vectors,
            self.references,
            logit_scale=self.record.logit_scale,
            logit_bias=self.record.logit_bias,
            threshold=self.record.threshold if threshold is None else threshold,
            top_k=top_k,
        )

    def scores(self, vectors: NDArray[np.floating]) -> NDArray[np.float32]:
        return class_scores(vectors, self.references)[0]

    def with_record(self, record: ClassSetRecord) -> Scorer:
        """The same references under the caller's copy of the record (which the caller may change)."""
        return Scorer(record=record, refs=self.refs, references=self.references)

    def explain(self, index: int) -> dict[str, Any]:
        ref = self.refs[index]
        out: dict[str, Any] = {"kind": ref.kind.value}
        if ref.kind is RefKind.PROMPT:
            out.update(prompt=ref.prompt, text=ref.text)
        elif ref.image_id:
            out.update(image_id=ref.image_id)
        elif ref.kind is RefKind.IMAGE:
            out.update(sha256=ref.sha256, filename=ref.filename)
        else:
            out.update(index=ref.position, sha256=ref.sha256)
        return out


def load_scorer(store: ClassStore, record: ClassSetRecord) -> Scorer:
    refs, vectors = store.references(record)
    if not record.classes or not refs:
        raise InvalidInput(
            f"{record.noun} {record.name!r} is empty: add prompts, example images or embeddings first",
            {"name": record.name},
        )
    index = {name: i for i, name in enumerate(record.classes)}
    keep = [i for i, ref in enumerate(refs) if ref.class_name in index]
    refs = [refs[i] for i in keep]
    references = References.build(record.classes, vectors[keep], [index[r.class_name] for r in refs])
    return Scorer(record=record, refs=refs, references=references)


class ScorerCache:
    """Scorers by owner, version, model and creation time: a class set's references are read once per
    version and process, not on every classify or label chunk. Every change of a class set saves a new
    version (a new key), including one made by another process; a set deleted and created again under
    its name has another creation time. A record still being created (version 0: its references are
    being written) is never cached."""

    def __init__(self, maxsize: int = 32) -> None:
        self._entries: LRUCache[tuple[str, int, str, datetime], Scorer] = LRUCache(maxsize)
        self._lock = threading.Lock()

    def get(self, store: ClassStore, record: ClassSetRecord) -> Scorer:
        key = (record.uuid, record.version, record.model_id, record.created_at)
        with self._lock:
            found = self._entries.get(key)
        if found is not None:
            return found.with_record(record)
        scorer = load_scorer(store, record)
        if record.version > 0:
            with self._lock:
                self._entries[key] = scorer
        return scorer
