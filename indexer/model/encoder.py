"""The CLIP encoder the service calls: images and texts in, L2-normalised float32 vectors out.

``load_encoder(settings)`` resolves the model directory (MODEL_DIR, the bundled tiny model, or the Hub
cache; offline unless ``allow_download``), picks fp32 or int8, and returns a ``ClipEncoder`` whose two
ONNX sessions load lazily on first use.

Batches are pipelined: while ONNX Runtime runs batch k, a small thread pool decodes and preprocesses
batch k+1 (OpenCV and numpy release the GIL).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from indexer.errors import ClipsearchError, InvalidInput, ModelUnavailable
from indexer.images import DecodedImage, decode_image
from indexer.model.catalogue import (
    BUNDLED_MODEL_IDS,
    SIGLIP_FALLBACK_BIAS,
    SIGLIP_FALLBACK_SCALE,
    TINY_MODEL_ID,
    ModelSpec,
    get_spec,
)
from indexer.model.cpu import cpu_description, u8s8_saturates
from indexer.model.files import (
    ResolvedModel,
    missing_files,
    quantized_dir,
    read_config,
    resolve_model,
)
from indexer.model.sessions import CUDA, TextualEncoder, VisualEncoder, default_providers
from indexer.preprocess import PreprocessConfig, preprocess
from indexer.settings import Settings
from indexer.tokenizer import TokenBatch

log = logging.getLogger(__name__)
T = TypeVar("T")
# a batch, its input tensor, and the futures of its items' preparation
_Prepared = tuple[Sequence[T], NDArray[np.float32], list[Future[None]]]
_Outcomes = list[NDArray[np.float32] | ClipsearchError]  # per item of a batch: its vector or its error

TEXT_BATCH = 64
FIRST_BATCH = 4
_limits_applied = False
_limits_lock = threading.Lock()


def limit_helper_threads() -> None:
    """Make numpy's BLAS and OpenCV single-threaded, once per process.

    Preprocessing runs its small matrix products and resizes beside ONNX Runtime, which already uses the
    cores. Multi-threaded OpenBLAS workers spin while waiting and stall ORT's parallel loops: measured on
    2 cores, the full image path fell from 0.85x to 0.2x of the raw session throughput. Parallelism comes
    from the encoder's own prep threads instead.
    """
    global _limits_applied
    with _limits_lock:
        if _limits_applied:
            return
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        cv2.setNumThreads(1)
        _limits_applied = True


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """The outcome for one input of ``ClipEncoder.embed_image_bytes``: a vector or a typed error."""

    index: int
    vector: NDArray[np.float32] | None = None
    error: ClipsearchError | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None


class ClipEncoder:
    def __init__(
        self,
        model_dir: Path,
        *,
        model_id: str,
        precision: str = "fp32",
        threads: int = 1,
        providers: Sequence[str] | None = None,
        batch_size: int | None = None,
        prep_workers: int | None = None,
        source: str = "model_dir",
        lanes: int = 1,
    ) -> None:
        config = read_config(model_dir)
        try:
            self.dim = int(config["embed_dim"])
            self.context_length = int(config.get("text_cfg", {}).get("context_length", 77))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelUnavailable(
                f"bad {model_dir / 'config.json'}: {exc}", {"path": str(model_dir)}
            ) from exc
        spec = get_spec(model_id)
        self.logit_scale, self.logit_bias = _logit_params(config, spec)
        self.model_id = model_id
        self.model_dir = model_dir
        self.precision = precision
        self.quantization: dict[str, Any] | None = (
            config.get("quantization")
            if precision == "int8" and isinstance(config.get("quantization"), dict)
            else None
        )
        self.int8_warning = _int8_warning(precision, self.quantization)
        if self.int8_warning:
            log.warning("%s: %s", model_dir, self.int8_warning)
        self.source = source
        self.threads = threads
        self.providers = list(providers) if providers is not None else default_providers()
        on_gpu = self.providers[0] == CUDA
        # lanes: batches in the image session at once (embed_stream), sharing its threads; 0 = auto
        self.lanes = max(1, lanes if lanes > 0 else (1 if on_gpu or threads < 2 else 2))
        self.visual = VisualEncoder(
            model_dir, threads=max(1, threads // self.lanes), providers=self.providers
        )
        self.textual = TextualEncoder(
            model_dir, threads=threads, providers=self.providers, context_length=self.context_length
        )
        self.batch_size = batch_size or (64 if on_gpu else 16)
        self.prep_workers = prep_workers or max(1, min(4, (os.cpu_count() or 2) // 2))
        self._pool: ThreadPoolExecutor | None = None
        self._lane_pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # ------------------------------------------------------------------------------------- properties
    @property
    def is_test_model(self) -> bool:
        return self.model_id in BUNDLED_MODEL_IDS

    @property
    def scoring(self) -> str:
        """How zero-shot scores become probabilities: ``softmax`` over the candidates at the logit scale
        (CLIP's contrastive loss) or ``sigmoid(logit_scale * cos + logit_bias)`` per candidate (SigLIP)."""
        return "softmax" if self.logit_bias is None else "sigmoid"

    @property
    def preprocess_cfg(self) -> PreprocessConfig:
        return self.visual.preprocess_cfg

    @property
    def image_size(self) -> int:
        """The model's input side in pixels (224 for ViT-B/32)."""
        return max(self.preprocess_cfg.size)

    @property
    def min_decode_side(self) -> int:
        """Pass as ``decode_image(min_side=...)``: the smallest reduced-decode side that keeps parity."""
        return self.preprocess_cfg.min_decode_side

    @property
    def loaded(self) -> bool:
        return self.visual.loaded and self.textual.loaded

    def load(self) -> None:
        """Load both sessions and the tokenizer now rather than on first use."""
        self.visual.load()
        self.textual.load()
        self.textual.tokenizer  # noqa: B018

    def unload(self) -> None:
        self.visual.unload()
        self.textual.unload()

    def close(self) -> None:
        with self._pool_lock:
            for pool in (self._pool, self._lane_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._pool = self._lane_pool = None

    def status(self) -> dict[str, Any]:
        provider = self.visual.provider or self.textual.provider
        return {
            "model_id": self.model_id,
            "precision": self.precision,
            **({"int8": self.quantization} if self.quantization else {}),
            **({"int8_warning": self.int8_warning} if self.int8_warning else {}),
            "is_test_model": self.is_test_model,
            "source": self.source,
            "model_dir": str(self.model_dir),
            "dim": self.dim,
            "scoring": self.scoring,
            "logit_scale": self.logit_scale,
            **({"logit_bias": self.logit_bias} if self.logit_bias is not None else {}),
            "image_size": self.image_size,
            "context_length": self.context_length,
            "loaded": {"visual": self.visual.loaded, "textual": self.textual.loaded},
            "provider": provider or self.providers[0],
            "providers": self.providers,
            "threads": self.threads,
            "onnxruntime_version": ort.__version__,
        }

    # ------------------------------------------------------------------------------------------ text
    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        return self.textual.tokenizer.encode(texts)

    def encode_texts(
        self, texts: Sequence[str], normalize: bool = True
    ) -> tuple[NDArray[np.float32], list[bool]]:
        """Vectors [n, dim] and, per text, whether it was cut to the context length."""
        vectors, tokens = self.encode_tokens(texts, normalize)
        return vectors, tokens.truncated

    def encode_tokens(
        self, texts: Sequence[str], normalize: bool = True
    ) -> tuple[NDArray[np.float32], TokenBatch]:
        """Like ``encode_texts`` with the whole token batch (ids, truncation, lengths)."""
        tokens = self.tokenize(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32), tokens
        ids = tokens.ids
        parts = [
            self.textual.run(ids[i : i + TEXT_BATCH], normalize) for i in range(0, len(texts), TEXT_BATCH)
        ]
        return (np.concatenate(parts) if len(parts) > 1 else parts[0]), tokens

    # ---------------------------------------------------------------------------------------- images
    def preprocess(self, image: NDArray[np.uint8]) -> NDArray[np.float32]:
        """RGB uint8 (H, W, 3) -> the model's normalised (3, S, S) float32 input."""
        return preprocess(image, self.preprocess_cfg)

    def encode_preprocessed(self, batch: NDArray[np.float32], normalize: bool = True) -> NDArray[np.float32]:
        if len(batch) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return self.visual.run(batch, normalize)

    def encode_images(
        self, images: Sequence[NDArray[np.uint8] | DecodedImage], normalize: bool = True
    ) -> NDArray[np.float32]:
        """RGB uint8 arrays, or decoded images (reduced decodes among them), -> vectors [n, dim];
        preprocessing overlaps inference."""
        cfg = self.preprocess_cfg

        def prepare(i: int, slot: NDArray[np.float32]) -> tuple[str | None, int, int]:
            image = images[i]
            if isinstance(image, DecodedImage):  # maybe a reduced decode: preprocessed as its full size
                preprocess(image.pixels, cfg, out=slot, source=image)
                return image.format, image.width, image.height
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise InvalidInput(f"image {i} is not an RGB uint8 array", {"index": i})
            preprocess(image, cfg, out=slot)
            return None, image.shape[1], image.shape[0]

        results = self._pipeline(len(images), prepare, normalize)
        for r in results:
            if r.error is not None:
                raise r.error
        return self._stack([r.vector for r in results])

    def embed_image_bytes(
        self,
        items: Sequence[bytes],
        *,
        max_pixels: int,
        normalize: bool = True,
        on_decoded: Callable[[int, DecodedImage], None] | None = None,
    ) -> list[ImageEmbedding]:
        """Decode, check and embed encoded images; one outcome per input, errors typed and in place.

        ``on_decoded(i, image)`` runs in the preparation thread right after item i decodes (ingest makes its
        thumbnail there), so that work overlaps inference too; a typed error it raises fails item i.
        """
        cfg = self.preprocess_cfg
        min_side = self.min_decode_side

        def prepare(i: int, slot: NDArray[np.float32]) -> tuple[str | None, int, int]:
            decoded = decode_image(items[i], max_pixels, min_side=min_side)
            if on_decoded is not None:
                on_decoded(i, decoded)
            preprocess(decoded.pixels, cfg, out=slot, source=decoded)
            return decoded.format, decoded.width, decoded.height

        return self._pipeline(len(items), prepare, normalize)

    def stream_batch_size(self, handed: int) -> int:
        """The size of the next batch for `embed_stream` after `handed` batches: short (FIRST_BATCH) for
        the first batch of each lane, so that every lane starts within a few images (with one short
        batch, the second lane idled while the first full batch was prepared), then `batch_size`."""
        return min(FIRST_BATCH, self.batch_size) if handed < self.lanes else self.batch_size

    def embed_stream(
        self,
        batches: Iterable[Sequence[T]],
        prepare: Callable[[T, NDArray[np.float32]], None],
        normalize: bool = True,
    ) -> Iterator[tuple[Sequence[T], _Outcomes]]:
        """Stream batches through the image session: while ONNX Runtime runs batch k (and, with several
        lanes, batch k+1 beside it), the preparation threads prepare the next one (and the caller's
        iterator may be reading the one after).

        ``prepare(item, slot)`` writes the item's model input into ``slot`` in a preparation thread; a
        ClipsearchError it raises fails that item alone. Yields each batch, in order, with, per item, its
        vector or its error. Only the batches in inference (one per lane) and the one being prepared hold
        tensors, so memory depends on the batch size and the lanes, not on how many batches the iterator
        yields.
        """
        h, w = self.preprocess_cfg.size
        pool = self._executor()
        lanes = self._lanes_executor()

        def submit(batch: Sequence[T]) -> _Prepared[T]:
            tensor = np.empty((len(batch), 3, h, w), dtype=np.float32)
            return batch, tensor, [pool.submit(prepare, item, tensor[j]) for j, item in enumerate(batch)]

        def infer(prepared: _Prepared[T]) -> _Outcomes:
            batch, tensor, futures = prepared
            outcomes: _Outcomes = []
            ok: list[int] = []
            for j, fut in enumerate(futures):
                try:
                    fut.result()
                    ok.append(j)
                    outcomes.append(_PENDING)
                except ClipsearchError as exc:
                    outcomes.append(exc)
            if ok:
                vectors = self.encode_preprocessed(tensor if len(ok) == len(batch) else tensor[ok], normalize)
                for row, j in enumerate(ok):
                    outcomes[j] = vectors[row]
            return outcomes

        source = iter(batches)
        first = next(source, None)
        current = submit(first) if first is not None else None
        running: deque[tuple[Sequence[T], list[Future[_Outcomes]]]] = deque()
        try:
            while current is not None or running:
                if current is not None:
                    # take the next batch (the pool is still preparing this one) and queue its preparation
                    following = next(source, None)
                    upcoming = submit(following) if following is not None else None
                    if lanes is None:
                        outcomes = infer(current)
                        batch = current[0]
                        current = upcoming
                        yield batch, outcomes
                        continue
                    # The last batch goes in slices, so that every lane works on it rather than one lane
                    # alone while the others idle (on 2 cores half a batch of a core, at every task's end).
                    parts = _slices(len(current[0]), 2 * self.lanes) if upcoming is None else [None]
                    running.append(
                        (
                            current[0],
                            [
                                lanes.submit(infer, current if part is None else _sliced(current, part))
                                for part in parts
                            ],
                        )
                    )
                    current = upcoming
                    if current is not None and len(running) < self.lanes:
                        continue  # a lane is free: start the next batch before waiting on the oldest
                batch, futures = running.popleft()
                yield batch, [outcome for future in futures for outcome in future.result()]
        finally:
            if current is not None:  # the consumer stopped early: let the queued preparation finish
                for fut in current[2]:
                    fut.cancel()
            wait([future for _, futures in running for future in futures])  # they hold their tensors

    # -------------------------------------------------------------------------------------- pipeline
    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                limit_helper_threads()
                self._pool = ThreadPoolExecutor(self.prep_workers, thread_name_prefix="clip-prep")
            return self._pool

    def _lanes_executor(self) -> ThreadPoolExecutor | None:
        """The threads that run batches through the image session at once; None with a single lane (the
        caller's thread runs them)."""
        if self.lanes == 1:
            return None
        with self._pool_lock:
            if self._lane_pool is None:
                self._lane_pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="clip-lane")
            return self._lane_pool

    def _stack(self, vectors: Sequence[NDArray[np.float32] | None]) -> NDArray[np.float32]:
        if not vectors:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([v for v in vectors if v is not None]).astype(np.float32, copy=False)

    def _pipeline(
        self,
        n: int,
        prepare: Callable[[int, NDArray[np.float32]], tuple[str | None, int, int]],
        normalize: bool = True,
    ) -> list[ImageEmbedding]:
        h, w = self.preprocess_cfg.size
        pool = self._executor()
        chunks = _chunks(n, self.batch_size)

        def submit(chunk: range) -> tuple[NDArray[np.float32], list[Future[tuple[str | None, int, int]]]]:
            batch = np.empty((len(chunk), 3, h, w), dtype=np.float32)
            return batch, [pool.submit(prepare, i, batch[j]) for j, i in enumerate(chunk)]

        results: list[ImageEmbedding] = []
        pending = submit(chunks[0]) if chunks else None
        for k, chunk in enumerate(chunks):
            assert pending is not None
            batch, futures = pending
            ok: list[int] = []
            metas: dict[int, tuple[str | None, int, int]] = {}
            failed: dict[int, ClipsearchError] = {}
            for j, fut in enumerate(futures):
                try:
                    metas[j] = fut.result()
                    ok.append(j)
                except ClipsearchError as exc:
                    failed[j] = exc
            # start preparing the next chunk before this one goes to ONNX Runtime
            pending = submit(chunks[k + 1]) if k + 1 < len(chunks) else None
            vectors = self.encode_preprocessed(batch if len(ok) == len(chunk) else batch[ok], normalize)
            row = dict(zip(ok, range(len(ok)), strict=True))
            for j, i in enumerate(chunk):
                if j in failed:
                    results.append(ImageEmbedding(index=i, error=failed[j]))
                else:
                    fmt, width, height = metas[j]
                    results.append(
                        ImageEmbedding(
                            index=i, vector=vectors[row[j]], format=fmt, width=width, height=height
                        )
                    )
        return results


_PENDING = np.empty(0, dtype=np.float32)  # a placeholder until the batch's vectors exist


def _slices(n: int, pieces: int) -> list[slice]:
    """``pieces`` consecutive slices of range(n) (fewer for a short n, none empty)."""
    pieces = max(1, min(pieces, n))
    bounds = [round(i * n / pieces) for i in range(pieces + 1)]
    return [slice(lo, hi) for lo, hi in pairwise(bounds)]


def _sliced(prepared: _Prepared[T], part: slice) -> _Prepared[T]:
    batch, tensor, futures = prepared
    return batch[part], tensor[part], futures[part]


def _chunks(n: int, batch_size: int) -> list[range]:
    """Batches of ``batch_size``, except a short first one: inference starts after a few images are ready
    instead of a whole batch, which is the only preprocessing the pipeline cannot hide."""
    first = min(n, max(1, min(FIRST_BATCH, batch_size)))
    starts = [0, *range(first, n, batch_size)] if n else []
    return [range(s, min(n, first if s == 0 else s + batch_size)) for s in starts]


def load_encoder(
    settings: Settings,
    *,
    allow_download: bool = False,
    model_id: str | None = None,
    model_dir: Path | None = None,
    precision: str | None = None,
    providers: Sequence[str] | None = None,
    batch_size: int | None = None,
    lanes: int = 1,
) -> ClipEncoder:
    """Build the encoder for ``settings`` (sessions load lazily).

    Resolution: ``model_dir`` / MODEL_DIR, else the bundled tiny model for its id, else the Hub cache for
    MODEL_ID. Offline unless ``allow_download``; a missing model raises ModelUnavailable saying how to pull
    it. With precision int8 the quantised copy from ``clipsearch models quantize`` is used (made on the fly
    for the tiny test model).
    """
    resolved = resolve_model(settings, allow_download=allow_download, model_id=model_id, model_dir=model_dir)
    precision = precision or settings.model_precision
    if precision not in ("fp32", "int8"):
        raise InvalidInput(f"unknown precision {precision!r} (fp32 or int8)", {"precision": precision})
    path = resolved.path
    if precision == "int8":
        path = _int8_dir(settings, resolved)
    return ClipEncoder(
        path,
        model_id=resolved.model_id,
        precision=precision,
        threads=settings.onnx_threads,
        providers=providers,
        batch_size=batch_size,
        source=resolved.source,
        lanes=lanes,
    )


def _logit_params(config: dict[str, Any], spec: ModelSpec | None) -> tuple[float, float | None]:
    """(logit_scale, logit_bias or None) for a model: the learned values its config.json records (our exports
    do), else the catalogue's. A SigLIP-loss model (``init_logit_bias`` in its open_clip config, or a sigmoid
    family in the catalogue) always gets a bias, so its probabilities are sigmoids, never a softmax."""
    scale = config.get("logit_scale")
    bias = config.get("logit_bias")
    sigmoid = (
        bias is not None or "init_logit_bias" in config or (spec is not None and spec.scoring == "sigmoid")
    )
    if scale is None:
        scale = spec.logit_scale if spec is not None else (SIGLIP_FALLBACK_SCALE if sigmoid else 100.0)
    if sigmoid and bias is None:
        bias = spec.logit_bias if spec is not None and spec.logit_bias is not None else None
        if bias is None:
            bias = SIGLIP_FALLBACK_BIAS
            log.warning(
                "no learned logit_bias known for %s: using ViT-B-16-SigLIP's (%s); set logit_scale and "
                "logit_bias in its config.json for exact probabilities",
                spec.model_id if spec is not None else "this model",
                bias,
            )
    return float(scale), (float(bias) if bias is not None else None)


def _int8_warning(precision: str, quantization: dict[str, Any] | None) -> str | None:
    """Why an int8 model may drift from fp32 on this CPU, or None."""
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


def tiny_encoder(settings: Settings | None = None, **kwargs: Any) -> ClipEncoder:
    """The bundled random-weight test model, explicitly (what ``up`` falls back to)."""
    return load_encoder(settings or Settings(), model_id=TINY_MODEL_ID, **kwargs)


def _int8_dir(settings: Settings, resolved: ResolvedModel) -> Path:
    qdir = quantized_dir(settings, resolved.model_id)
    if not missing_files(qdir):
        return qdir
    if resolved.is_test_model:  # small enough to quantise on the spot
        from indexer.model.quantize import quantize_model_dir

        return quantize_model_dir(resolved.path, qdir, min_cosine=settings.int8_min_cosine).path
    raise ModelUnavailable(
        f"no int8 copy of model {resolved.model_id!r}; create it with "
        f"`clipsearch models quantize {resolved.model_id}` or set MODEL_PRECISION=fp32",
        {"model_id": resolved.model_id, "hint": f"clipsearch models quantize {resolved.model_id}"},
    )
