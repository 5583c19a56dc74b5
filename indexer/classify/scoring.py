"""Scoring queries against per-class reference vectors.

- A class holds one or more unit reference vectors (prompts, example images, raw embeddings, mixed).
  Its score for a query is the **maximum** cosine similarity over its references: the best-matching
  reference wins and is reported as the explanation. (Prompt ensembles are averaged *before* this, into
  one reference per prompt; see `prompts.ensemble`.)
- Probabilities mean what the model's loss means: for CLIP (contrastive loss) the softmax of
  ``logit_scale * scores`` over the classes, CLIP's zero-shot head; for SigLIP (sigmoid loss, a learned
  ``logit_bias``) ``sigmoid(logit_scale * score + logit_bias)`` per class, independent of the other classes
  (they need not sum to 1, and all may be low).
- The margin is the top-1 score minus the top-2 score (cosine), None with a single class.
- When a threshold is set and the top score is below it (by more than TOLERANCE), the prediction is
  ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from indexer.classify.prompts import normalise_rows
from indexer.errors import InvalidInput

OTHER: Final = "other"
# Scores are float32 dot products whose last bits depend on batch shape; a score this close below a
# threshold still meets it, so a threshold set to an example's own score keeps that example.
TOLERANCE: Final = 1e-6
BLOCK: Final = 2048  # queries scored per matrix product, to bound memory


@dataclass(frozen=True, eq=False)
class References:
    """Reference vectors sorted by class: rows ``starts[c]:starts[c+1]`` belong to class ``c``."""

    classes: list[str]
    vectors: NDArray[np.float32]  # [R, d], unit rows
    class_of: NDArray[np.int64]  # [R]
    order: NDArray[np.int64]  # original index of each sorted row (to find the reference's metadata)
    starts: NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        counts = np.bincount(self.class_of, minlength=len(self.classes))
        object.__setattr__(self, "starts", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    @classmethod
    def build(cls, classes: list[str], vectors: NDArray[np.floating], class_of: list[int]) -> References:
        """Sort references by class and normalise them; every class needs at least one reference."""
        if not classes:
            raise InvalidInput("the class set has no classes: add prompts, example images or embeddings")
        arr = np.asarray(vectors, dtype=np.float32)
        index = np.asarray(class_of, dtype=np.int64)
        if arr.ndim != 2 or len(arr) != len(index):
            raise InvalidInput("each reference needs exactly one vector")
        if index.size and (index.min() < 0 or index.max() >= len(classes)):
            raise InvalidInput("a reference points at no class")
        present = np.bincount(index, minlength=len(classes)) if index.size else np.zeros(len(classes), int)
        empty = [classes[c] for c in np.flatnonzero(present == 0)]
        if empty:
            raise InvalidInput(f"class {empty[0]!r} has no references", {"empty_classes": empty})
        order = np.argsort(index, kind="stable")
        return cls(
            classes=list(classes), vectors=normalise_rows(arr[order]), class_of=index[order], order=order
        )

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def one_per_class(self) -> bool:
        return len(self.vectors) == len(self.classes)


def check_queries(queries: NDArray[np.floating], dim: int) -> NDArray[np.float32]:
    arr = np.asarray(queries, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidInput(f"query vectors have dimension {arr.shape[-1]}, the class set has {dim}")
    return normalise_rows(arr)


def class_scores(
    queries: NDArray[np.floating], refs: References, *, with_best: bool = False
) -> tuple[NDArray[np.float32], NDArray[np.int64] | None]:
    """Scores [n, C]: max cosine over each class's references; optionally the sorted row of that max."""
    q = check_queries(queries, refs.dim)
    n, c = len(q), len(refs.classes)
    scores = np.empty((n, c), dtype=np.float32)
    best = np.empty((n, c), dtype=np.int64) if with_best else None
    for lo in range(0, n, BLOCK):
        sims = q[lo : lo + BLOCK] @ refs.vectors.T  # [b, R]
        if refs.one_per_class:
            scores[lo : lo + BLOCK] = sims
            if best is not None:
                best[lo : lo + BLOCK] = np.arange(c)
            continue
        scores[lo : lo + BLOCK] = np.maximum.reduceat(sims, refs.starts[:-1], axis=1)
        if best is not None:
            for j in range(c):
                s, e = refs.starts[j], refs.starts[j + 1]
                best[lo : lo + BLOCK, j] = s + np.argmax(sims[:, s:e], axis=1)
    return scores, best


def softmax(scores: NDArray[np.floating], logit_scale: float) -> NDArray[np.float32]:
    """Row-wise softmax of ``logit_scale * scores`` (max-subtracted, so it never overflows)."""
    logits = np.asarray(scores, dtype=np.float64) * float(logit_scale)
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    out: NDArray[np.float32] = (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


def sigmoid(scores: NDArray[np.floating], logit_scale: float, logit_bias: float) -> NDArray[np.float32]:
    """Element-wise ``sigmoid(logit_scale * scores + logit_bias)``: SigLIP's per-pair match probability."""
    logits = np.asarray(scores, dtype=np.float64) * float(logit_scale) + float(logit_bias)
    # 0.5 * (1 + tanh(x / 2)) never overflows, unlike 1 / (1 + exp(-x)) for very negative x
    out: NDArray[np.float32] = (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
    return out


def probabilities(
    scores: NDArray[np.floating], logit_scale: float, logit_bias: float | None = None
) -> NDArray[np.float32]:
    """The model family's probabilities for rows of scores: softmax over each row (CLIP) when there is no
    logit bias, else the sigmoid of each score (SigLIP)."""
    if logit_bias is None:
        return softmax(scores, logit_scale)
    return sigmoid(scores, logit_scale, logit_bias)


@dataclass(frozen=True)
class Ranked:
    class_index: int
    name: str
    score: float
    probability: float
    reference: int  # original index of the best-matching reference


@dataclass(frozen=True)
class Prediction:
    label: str  # a class name, or OTHER
    is_other: bool
    score: float  # top-1 cosine
    probability: float  # top-1 probability (softmax over the classes, or SigLIP's sigmoid)
    margin: float | None  # top-1 minus top-2 cosine; None with one class
    ranked: list[Ranked]


def predict(
    queries: NDArray[np.floating],
    refs: References,
    *,
    logit_scale: float,
    logit_bias: float | None = None,
    threshold: float | None = None,
    top_k: int = 5,
) -> list[Prediction]:
    scores, best = class_scores(queries, refs, with_best=True)
    assert best is not None
    probs = probabilities(scores, logit_scale, logit_bias)
    k = max(1, min(top_k, len(refs.classes)))
    out = []
    for i in range(len(scores)):
        order = np.argsort(-scores[i], kind="stable")
        ranked = [
            Ranked(
                class_index=int(j),
                name=refs.classes[j],
                score=round(float(scores[i, j]), 6),
                probability=round(float(probs[i, j]), 6),
                reference=int(refs.order[best[i, j]]),
            )
            for j in order[:k]
        ]
        top = float(scores[i, order[0]])
        margin = round(top - float(scores[i, order[1]]), 6) if len(order) > 1 else None
        below = threshold is not None and top < threshold - TOLERANCE
        out.append(
            Prediction(
                label=OTHER if below else refs.classes[order[0]],
                is_other=below,
                score=round(top, 6),
                probability=round(float(probs[i, order[0]]), 6),
                margin=margin,
                ranked=ranked,
            )
        )
    return out


def assign(
    scores: NDArray[np.floating], threshold: float | None, *, multi_label: bool = False
) -> list[list[int]]:
    """Class indexes to label each row with: the top class (if at or above the threshold), or with
    ``multi_label`` every class at or above the threshold (best first)."""
    arr = np.asarray(scores)
    if multi_label:
        if threshold is None:
            raise InvalidInput("multi-label assignment needs a threshold")
        result = []
        for row in arr:
            hits = np.flatnonzero(row >= threshold - TOLERANCE)
            result.append([int(j) for j in hits[np.argsort(-row[hits], kind="stable")]])
        return result
    top = np.argmax(arr, axis=1)
    if threshold is None:
        keep = np.ones(len(arr), bool)
    else:
        keep = arr[np.arange(len(arr)), top] >= threshold - TOLERANCE
    return [[int(t)] if k else [] for t, k in zip(top, keep, strict=True)]
