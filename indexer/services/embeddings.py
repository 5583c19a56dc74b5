"""The embedding use cases of the HTTP API: embed texts, embed images, compare; as plain functions, and
as `EmbeddingsService` over this process's encoder and settings (with the URL fetch of referenced images).

Inputs are plain values (``str`` for a text, ``bytes`` for an encoded image); results are dataclasses
holding numpy arrays, with ``to_dict()`` for JSON. Every bad input raises a typed error from
``indexer.errors`` (InvalidInput, PayloadTooLarge, UnsupportedMediaType) whose details name the input.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from indexer.classify.scoring import probabilities
from indexer.errors import ClipsearchError, InvalidInput, PayloadTooLarge
from indexer.media.decode import check_content_type
from indexer.model.encoder import ClipEncoder
from indexer.settings import Settings
from indexer.sources.urls import fetch_url, parse_url

MAX_TEXT_CHARS: Final = 10_000
DEFAULT_MAX_BATCH: Final = 64
DEFAULT_MAX_PIXELS: Final = 64_000_000

Item = str | bytes  # a text, or the bytes of an encoded image


@dataclass(frozen=True, eq=False)
class _Embeddings:
    model_id: str
    dim: int
    normalized: bool
    vectors: NDArray[np.float32]  # [n, dim]

    def _dict(self, per_vector: list[dict[str, Any]]) -> dict[str, Any]:
        """The JSON of the result, with each vector's own fields beside it."""
        return {
            "model_id": self.model_id,
            "dim": self.dim,
            "normalized": self.normalized,
            "embeddings": [
                {"vector": v.tolist(), **extra} for v, extra in zip(self.vectors, per_vector, strict=True)
            ],
        }


@dataclass(frozen=True, eq=False)
class TextEmbeddingResult(_Embeddings):
    truncated: list[bool]  # per text: cut to the context length (77 tokens)
    n_tokens: list[int]  # per text: tokens before truncation, start and end included

    def to_dict(self) -> dict[str, Any]:
        return self._dict(
            [{"truncated": t, "n_tokens": n} for t, n in zip(self.truncated, self.n_tokens, strict=True)]
        )


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


@dataclass(frozen=True, eq=False)
class ImageEmbeddingResult(_Embeddings):
    images: list[ImageInfo]

    def to_dict(self) -> dict[str, Any]:
        return self._dict([{"format": i.format, "width": i.width, "height": i.height} for i in self.images])


@dataclass(frozen=True)
class CompareResult:
    model_id: str
    logit_scale: float
    logit_bias: float | None  # SigLIP: probabilities are sigmoid(logit_scale * similarity + logit_bias)
    subject_kind: Literal["text", "image"]
    prompt_kinds: list[Literal["text", "image"]]
    similarities: list[float]  # cosine of the subject with each prompt
    # CLIP: softmax(logit_scale * similarities) over the prompts; SigLIP: each prompt's own sigmoid
    probabilities: list[float]
    best: int  # index of the most similar prompt

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "logit_scale": self.logit_scale,
            "logit_bias": self.logit_bias,
            "scoring": "softmax" if self.logit_bias is None else "sigmoid",
            "subject": {"kind": self.subject_kind},
            "results": [
                {"index": i, "kind": k, "similarity": s, "probability": p}
                for i, (k, s, p) in enumerate(
                    zip(self.prompt_kinds, self.similarities, self.probabilities, strict=True)
                )
            ],
            "best": self.best,
        }


# ------------------------------------------------------------------------------------------ checks
def _check_batch(items: Sequence[object], what: str, max_batch: int) -> None:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise InvalidInput(f"{what} must be a list", {"field": what})
    if not items:
        raise InvalidInput(f"{what} is empty: send at least one", {"field": what})
    if len(items) > max_batch:
        raise PayloadTooLarge(
            f"{len(items)} {what} in one request, over the limit of {max_batch}",
            {"field": what, "count": len(items), "limit": max_batch},
        )


def _check_text(text: object, index: int) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"text {index} is not a string", {"index": index})
    if not text.strip():
        raise InvalidInput(f"text {index} is empty", {"index": index, "reason": "empty_text"})
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(
            f"text {index} is {len(text)} characters, over the limit of {MAX_TEXT_CHARS}",
            {"index": index, "reason": "text_too_long", "limit": MAX_TEXT_CHARS},
        )
    return text


def _with_index(error: ClipsearchError, index: int) -> ClipsearchError:
    return type(error)(error.message, {**error.details, "index": index})


# ------------------------------------------------------------------------------------------- calls
def embed_texts(
    encoder: ClipEncoder,
    texts: Sequence[str],
    normalize: bool = True,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> TextEmbeddingResult:
    _check_batch(texts, "texts", max_batch)
    checked = [_check_text(t, i) for i, t in enumerate(texts)]
    vectors, tokens = encoder.encode_tokens(checked, normalize)
    return TextEmbeddingResult(
        model_id=encoder.model_id,
        dim=encoder.dim,
        normalized=normalize,
        vectors=vectors,
        truncated=tokens.truncated,
        n_tokens=tokens.lengths,
    )


def embed_images(
    encoder: ClipEncoder,
    images: Sequence[bytes],
    normalize: bool = True,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> ImageEmbeddingResult:
    """Embed encoded images. The first bad image raises its typed error, with ``details["index"]``."""
    _check_batch(images, "images", max_batch)
    for i, data in enumerate(images):
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"image {i} is not bytes", {"index": i})
    outcomes = encoder.embed_image_bytes(
        [bytes(d) for d in images], max_pixels=max_pixels, normalize=normalize
    )
    for out in outcomes:
        if out.error is not None:
            raise _with_index(out.error, out.index)
    return ImageEmbeddingResult(
        model_id=encoder.model_id,
        dim=encoder.dim,
        normalized=normalize,
        vectors=np.stack([o.vector for o in outcomes if o.vector is not None]),
        images=[ImageInfo(o.format or "", o.width or 0, o.height or 0) for o in outcomes],
    )


def _embed_items(encoder: ClipEncoder, items: Sequence[Item], max_pixels: int) -> NDArray[np.float32]:
    """Normalised vectors for a mix of texts and images, in input order."""
    vectors = np.empty((len(items), encoder.dim), dtype=np.float32)
    text_idx = [i for i, it in enumerate(items) if isinstance(it, str)]
    image_idx = [i for i in range(len(items)) if i not in set(text_idx)]
    if text_idx:
        vecs, _ = encoder.encode_texts([_check_text(items[i], i) for i in text_idx])
        vectors[text_idx] = vecs
    if image_idx:
        outcomes = encoder.embed_image_bytes([bytes(items[i]) for i in image_idx], max_pixels=max_pixels)  # type: ignore[arg-type]
        for pos, out in zip(image_idx, outcomes, strict=True):
            if out.error is not None:
                raise _with_index(out.error, pos)
            assert out.vector is not None
            vectors[pos] = out.vector
    return vectors


def _kind(item: object, what: str, index: int | None = None) -> Literal["text", "image"]:
    if isinstance(item, str):
        return "text"
    if isinstance(item, bytes | bytearray | memoryview):
        return "image"
    where = what if index is None else f"{what} {index}"
    raise InvalidInput(f"{where} must be a text or the bytes of an image", {"field": what, "index": index})


def compare(
    encoder: ClipEncoder,
    subject: Item,
    prompts: Sequence[Item],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> CompareResult:
    """Cosine similarity of ``subject`` with each prompt, and the model family's probabilities: for CLIP the
    softmax over the prompts at the model's logit scale (zero-shot classification), for SigLIP each prompt's
    own ``sigmoid(logit_scale * cos + logit_bias)``. Subject and prompts may each be text or image."""
    subject_kind = _kind(subject, "subject")
    _check_batch(prompts, "prompts", max_batch)
    kinds = [_kind(p, "prompt", i) for i, p in enumerate(prompts)]
    try:
        subject_vec = _embed_items(encoder, [subject], max_pixels)[0]
    except ClipsearchError as exc:
        raise type(exc)(f"subject: {exc.message}", {**exc.details, "field": "subject"}) from exc
    try:
        prompt_vecs = _embed_items(encoder, list(prompts), max_pixels)
    except ClipsearchError as exc:
        raise type(exc)(f"prompt: {exc.message}", {**exc.details, "field": "prompts"}) from exc
    sims = prompt_vecs @ subject_vec
    probs = probabilities(sims[None, :], encoder.logit_scale, encoder.logit_bias)[0]
    return CompareResult(
        model_id=encoder.model_id,
        logit_scale=encoder.logit_scale,
        logit_bias=encoder.logit_bias,
        subject_kind=subject_kind,
        prompt_kinds=kinds,
        similarities=[float(s) for s in sims],
        probabilities=[float(p) for p in probs],
        best=int(np.argmax(sims)),
    )


@dataclass(frozen=True)
class EmbeddingsService:
    encoder: Callable[[], ClipEncoder]  # loaded on first use
    settings: Settings

    check_upload = staticmethod(check_content_type)  # an uploaded part's declared type (415 if not an image)

    def check_urls(self, urls: Iterable[str]) -> float:
        """Parse every URL of a request before any is downloaded; the deadline that all downloads share."""
        for url in urls:
            parse_url(url, self.settings.url_max_length)
        return time.monotonic() + self.settings.url_timeout_s

    def fetch(self, url: str, deadline: float | None = None) -> bytes:
        """The bytes of a referenced image, under the URL rules (allow-list, size cap, deadline)."""
        settings = self.settings
        return fetch_url(
            url,
            allow=settings.url_allow,
            max_bytes=settings.url_max_bytes,
            timeout_s=settings.url_timeout_s,
            max_redirects=settings.url_max_redirects,
            max_length=settings.url_max_length,
            deadline=deadline,
        )

    def texts(self, texts: Sequence[str], normalize: bool) -> TextEmbeddingResult:
        return embed_texts(self.encoder(), texts, normalize, max_batch=self.settings.max_batch)

    def images(self, images: Sequence[bytes], normalize: bool) -> ImageEmbeddingResult:
        return embed_images(
            self.encoder(),
            images,
            normalize,
            max_pixels=self.settings.max_image_pixels,
            max_batch=self.settings.max_batch,
        )

    def compare(self, subject: Item, prompts: Sequence[Item]) -> CompareResult:
        return compare(
            self.encoder(),
            subject,
            prompts,
            max_pixels=self.settings.max_image_pixels,
            max_batch=self.settings.max_batch,
        )
