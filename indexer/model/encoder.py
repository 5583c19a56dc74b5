"""The CLIP encoder the service calls: images and texts in, L2-normalised float32 vectors out.

``indexer.model.loader.load_encoder(settings)`` builds one; its two ONNX sessions load lazily on first use.
Every image path runs through one batching path (``indexer.model.batching``): while ONNX Runtime runs a
batch, the preparation threads decode and preprocess the next (OpenCV and numpy release the GIL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from indexer.errors import ClipsearchError, InvalidInput
from indexer.media.decode import DecodedImage
from indexer.media.decoder import Decoder, InlineDecoder
from indexer.model import batching
from indexer.model.catalogue import BUNDLED_MODEL_IDS
from indexer.model.config import model_config
from indexer.model.int8 import int8_warning
from indexer.model.logits import scoring
from indexer.model.pools import EncoderPools, default_prep_workers, lane_count
from indexer.model.preprocess import PreprocessConfig, preprocess
from indexer.model.sessions import CUDA, TextualEncoder, VisualEncoder, default_providers
from indexer.model.status import encoder_status
from indexer.model.tokenizer import TokenBatch

log = logging.getLogger(__name__)
T = TypeVar("T")
_Meta = tuple[str | None, int, int]  # an image's format, width and height

TEXT_BATCH = 64


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
        decoder: Decoder | None = None,
    ) -> None:
        self.config = config = model_config(model_dir, model_id, precision)
        self.dim = config.dim
        self.context_length = config.context_length
        self.logit_scale, self.logit_bias = config.logit_scale, config.logit_bias
        self.quantization = config.quantization
        self.model_id = model_id
        self.model_dir = model_dir
        self.precision = precision
        self.int8_warning = int8_warning(precision, config.quantization)
        if self.int8_warning:
            log.warning("%s: %s", model_dir, self.int8_warning)
        self.source = source
        self.threads = threads
        self.providers = list(providers) if providers is not None else default_providers()
        on_gpu = self.providers[0] == CUDA
        # lanes: batches in the image session at once, sharing its threads; 0 = auto
        self.lanes = lane_count(lanes, threads=threads, on_gpu=on_gpu)
        self.visual = VisualEncoder(
            model_dir, threads=max(1, threads // self.lanes), providers=self.providers
        )
        self.textual = TextualEncoder(
            model_dir, threads=threads, providers=self.providers, context_length=self.context_length
        )
        self.batch_size = batch_size or (64 if on_gpu else 16)
        self.prep_workers = prep_workers or default_prep_workers()
        self._pools = EncoderPools(self.prep_workers, self.lanes)
        # How untrusted image bytes become model input (indexer/media/decoder.py): load_encoder passes the
        # settings' decoder (a pool of limited processes by default); built directly, bytes decode inline.
        self.decoder: Decoder = decoder if decoder is not None else InlineDecoder.with_defaults()

    # ------------------------------------------------------------------------------------- properties
    @property
    def is_test_model(self) -> bool:
        return self.model_id in BUNDLED_MODEL_IDS

    @property
    def scoring(self) -> str:
        """``softmax`` (CLIP) or ``sigmoid`` (SigLIP): see ``indexer.model.logits.scoring``."""
        return scoring(self.logit_bias)

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
        self._pools.close()

    def status(self) -> dict[str, Any]:
        return encoder_status(self)

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

        def prepare(i: int, slot: NDArray[np.float32]) -> _Meta:
            image = images[i]
            if isinstance(image, DecodedImage):  # maybe a reduced decode: preprocessed as its full size
                preprocess(image.pixels, cfg, out=slot, source=image)
                return image.format, image.width, image.height
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise InvalidInput(f"image {i} is not an RGB uint8 array", {"index": i})
            preprocess(image, cfg, out=slot)
            return None, image.shape[1], image.shape[0]

        results = self._embed_indexed(len(images), prepare, normalize)
        for r in results:
            if r.error is not None:
                raise r.error
        if not results:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([r.vector for r in results if r.vector is not None]).astype(np.float32, copy=False)

    def embed_image_bytes(
        self, items: Sequence[bytes], *, max_pixels: int, normalize: bool = True
    ) -> list[ImageEmbedding]:
        """Decode (through ``self.decoder``), check and embed encoded images; one outcome per input,
        errors typed and in place."""
        cfg = self.preprocess_cfg
        min_side = self.min_decode_side

        def prepare(i: int, slot: NDArray[np.float32]) -> _Meta:
            meta = self.decoder.prepare(items[i], max_pixels, cfg, slot, min_side=min_side)
            return meta.format, meta.width, meta.height

        return self._embed_indexed(len(items), prepare, normalize)

    def batch_plan(self, n: int) -> list[int]:
        """The sizes of the batches for ``n`` items through ``embed_stream``: short for each lane's first
        batch, then ``batch_size``, and the tail split evenly over the lanes
        (``indexer.model.batching.batch_sizes``)."""
        return batching.batch_sizes(n, lanes=self.lanes, batch_size=self.batch_size)

    def embed_stream(
        self,
        batches: Iterable[Sequence[T]],
        prepare: Callable[[T, NDArray[np.float32]], None],
        normalize: bool = True,
    ) -> Iterator[tuple[Sequence[T], batching.Outcomes]]:
        """Stream batches through the image session, preparation overlapping inference, ``lanes`` batches
        at once (``indexer.model.batching.stream``).

        ``prepare(item, slot)`` writes the item's model input into ``slot`` in a preparation thread; a
        ClipsearchError it raises fails that item alone. Yields each batch, in order, with, per item, its
        vector or its error.
        """
        h, w = self.preprocess_cfg.size
        return batching.stream(
            batches,
            prepare,
            lambda tensor: self.encode_preprocessed(tensor, normalize),
            item_shape=(3, h, w),
            pools=self._pools,
        )

    def _embed_indexed(
        self, n: int, prepare: Callable[[int, NDArray[np.float32]], _Meta], normalize: bool
    ) -> list[ImageEmbedding]:
        """Items 0..n-1 through ``embed_stream``, in the batches of ``batch_plan``."""
        metas: list[_Meta | None] = [None] * n

        def prepare_item(i: int, slot: NDArray[np.float32]) -> None:
            metas[i] = prepare(i, slot)

        results: list[ImageEmbedding] = []
        plan = self.batch_plan(n)
        indexes = batching.index_batches(n, lambda k: batching.planned_size(plan, k, self.batch_size))
        for batch, outcomes in self.embed_stream(indexes, prepare_item, normalize):
            for i, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, ClipsearchError):
                    results.append(ImageEmbedding(index=i, error=outcome))
                    continue
                meta = metas[i]
                assert meta is not None  # a vector means its preparation returned
                fmt, width, height = meta
                results.append(
                    ImageEmbedding(index=i, vector=outcome, format=fmt, width=width, height=height)
                )
        return results
