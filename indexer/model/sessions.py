"""ONNX Runtime sessions for the two CLIP towers, one small class each on a shared lazy-loading base
(the shape of Immich's ``InferenceModel``).

- CPU by default with explicit intra-op threads; CUDA first when the CUDA provider is present.
- Both sessions live in one process, so thread spinning is off (``session.intra_op.allow_spinning=0``):
  with spinning on, the idle session's pool keeps burning the cores and text latency doubles after an
  image batch.
- A session loads on first use, once, under a lock. Exports with a fixed batch dimension (Immich's are
  batch 1) are fed one chunk of that size at a time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from indexer import metrics
from indexer.errors import ModelUnavailable
from indexer.model.preprocess import PreprocessConfig
from indexer.model.tokenizer import ClipTokenizer

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def default_providers() -> list[str]:
    return [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def l2_normalize(x: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return (x / norms).astype(np.float32, copy=False)


class OnnxModel:
    """One ONNX tower, loaded lazily."""

    kind: ClassVar[str] = ""

    def __init__(self, model_dir: Path, *, threads: int, providers: Sequence[str] | None = None) -> None:
        self.model_dir = model_dir
        self.model_path = model_dir / self.kind / "model.onnx"
        self.threads = threads
        self.providers = list(providers) if providers is not None else default_providers()
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()
        self.input_name = ""
        self.fixed_batch: int | None = None

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def session(self) -> ort.InferenceSession:
        session = self._session
        return session if session is not None else self.load()

    def load(self) -> ort.InferenceSession:
        with self._lock:
            if self._session is not None:
                return self._session
            log.info("loading %s model %s", self.kind, self.model_path)
            try:
                session = ort.InferenceSession(
                    str(self.model_path), sess_options=session_options(self.threads), providers=self.providers
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
                raise ModelUnavailable(
                    f"cannot load {self.model_path}: {exc}", {"path": str(self.model_path)}
                ) from exc
            first = session.get_inputs()[0]
            self.input_name = first.name
            batch_dim = first.shape[0] if first.shape else None
            self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
            self._check(session)
            self._session = session
            return session

    def unload(self) -> None:
        with self._lock:
            self._session = None

    @property
    def provider(self) -> str | None:
        session = self._session
        return session.get_providers()[0] if session is not None else None

    def _check(self, session: ort.InferenceSession) -> None:
        """Hook: validate the graph against the model's configs."""

    def run(self, x: NDArray[Any], normalize: bool = True) -> NDArray[np.float32]:
        """Embeddings for a batch, float32 [n, dim], L2-normalised unless ``normalize`` is False (Immich's
        exports normalise inside the graph already)."""
        session = self.session
        step = self.fixed_batch or len(x)
        with metrics.time_inference(self.kind, len(x)):
            outputs = [
                session.run(None, {self.input_name: x[i : i + step]})[0]
                for i in range(0, len(x), max(step, 1))
            ]
        out = np.asarray(np.concatenate(outputs) if len(outputs) != 1 else outputs[0], dtype=np.float32)
        return l2_normalize(out) if normalize else out


class VisualEncoder(OnnxModel):
    kind = "visual"

    def __init__(self, model_dir: Path, *, threads: int, providers: Sequence[str] | None = None) -> None:
        super().__init__(model_dir, threads=threads, providers=providers)
        cfg_path = model_dir / "visual" / "preprocess_cfg.json"
        try:
            self.preprocess_cfg = PreprocessConfig.from_file(cfg_path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ModelUnavailable(
                f"bad preprocessing config {cfg_path}: {exc}", {"path": str(cfg_path)}
            ) from exc

    def _check(self, session: ort.InferenceSession) -> None:
        shape = session.get_inputs()[0].shape
        h, w = self.preprocess_cfg.size
        if len(shape) != 4 or (isinstance(shape[2], int) and (shape[2], shape[3]) != (h, w)):
            raise ModelUnavailable(
                f"{self.model_path} expects input {shape}, but preprocess_cfg.json says {h}x{w}",
                {"path": str(self.model_path)},
            )


class TextualEncoder(OnnxModel):
    kind = "textual"

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int,
        providers: Sequence[str] | None = None,
        context_length: int = 77,
    ) -> None:
        super().__init__(model_dir, threads=threads, providers=providers)
        self.context_length = context_length
        self._tokenizer: ClipTokenizer | None = None
        self._ids_dtype: type[np.integer[Any]] = np.int32

    @property
    def tokenizer(self) -> ClipTokenizer:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = self._load_tokenizer()
        return self._tokenizer

    def _load_tokenizer(self) -> ClipTokenizer:
        textual = self.model_dir / "textual"
        try:
            config = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
            kwargs = config.get("text_cfg", {}).get("tokenizer_kwargs") or {}
            clean = kwargs.get("clean")  # SigLIP: canonicalize; else the tokenizer kind's default
            return ClipTokenizer.from_dir(
                textual, self.context_length, clean=str(clean) if clean is not None else None
            )
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ModelUnavailable(
                f"cannot load the tokenizer in {textual}: {exc}", {"path": str(textual)}
            ) from exc

    def _check(self, session: ort.InferenceSession) -> None:
        first = session.get_inputs()[0]
        self._ids_dtype = np.int64 if first.type == "tensor(int64)" else np.int32
        length = first.shape[1] if len(first.shape) > 1 else None
        if isinstance(length, int) and length != self.context_length:
            raise ModelUnavailable(
                f"{self.model_path} expects {length} tokens, config.json says {self.context_length}",
                {"path": str(self.model_path)},
            )

    def run(self, x: NDArray[Any], normalize: bool = True) -> NDArray[np.float32]:
        self.session  # noqa: B018  - loads and sets the ids dtype
        return super().run(x.astype(self._ids_dtype, copy=False), normalize)
