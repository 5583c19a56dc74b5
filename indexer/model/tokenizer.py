"""Text tokenisation for every model family, through the `tokenizers` library and ``textual/tokenizer.json``.

Two kinds of tokenizer.json, told apart by their vocabulary:

- **CLIP BPE** (OpenAI and LAION CLIP, ResNet and ViT alike; the vocabulary has ``<|startoftext|>``). Text is
  cleaned as open_clip does before BPE (``ftfy.fix_text``, HTML unescaped twice, whitespace collapsed,
  lower-cased), so ids are identical to ``open_clip.tokenize``: ``[SOT] + tokens + [EOT]``, zero-padded to
  the context length (77). A text longer than that keeps its first 75 tokens and ends with EOT, exactly like
  open_clip's truncation, and is reported as truncated.
- **Hugging Face tokenizers** (SigLIP's T5 sentencepiece, XLM-RoBERTa's sentencepiece, NLLB...), as
  open_clip's ``HFTokenizer`` runs them: open_clip's cleaning (``canonicalize`` for SigLIP: punctuation
  removed and lower-cased; otherwise ``whitespace``, case kept), then the tokenizer's own normaliser and
  post-processor (``<s> ... </s>`` for XLM-R, ``... </s>`` for SigLIP), truncated to the context length
  with the special tokens kept (the body is cut, as ``truncation=True`` does) and padded with the
  ``pad_token`` of ``tokenizer_config.json`` (SigLIP pads with ``</s>``, XLM-R with ``<pad>``), as Immich
  does.
"""

from __future__ import annotations

import html
import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import ftfy
import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer

DEFAULT_CONTEXT_LENGTH: Final = 77
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _basic_clean(text: str) -> str:
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def _whitespace_clean(text: str) -> str:
    return " ".join(text.split())


def clean_text(text: str, mode: str = "lower") -> str:
    """open_clip's text cleaning: ``lower`` (CLIP), ``whitespace`` or ``canonicalize`` (SigLIP-style)."""
    text = _basic_clean(text)
    if mode == "canonicalize":
        return _whitespace_clean(text.replace("_", " ").translate(_PUNCTUATION).lower())
    text = _whitespace_clean(text)
    return text.lower() if mode == "lower" else text


CLIP_SOT: Final = "<|startoftext|>"
CLIP_EOT: Final = "<|endoftext|>"


@dataclass(frozen=True, eq=False)
class TokenBatch:
    ids: NDArray[np.int32]  # [n, context_length]
    truncated: list[bool]
    lengths: list[int]  # tokens before truncation, SOT and EOT included


class ClipTokenizer:
    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        sot_id: int,
        eot_id: int,
        pad_id: int = 0,
        clean: str = "lower",
        special_tokens: str = "clip",
    ) -> None:
        """``special_tokens``: ``clip`` adds SOT/EOT itself (CLIP BPE); ``post_processor`` lets the
        tokenizer.json's post-processor add them (Hugging Face tokenizers; ``sot_id``/``eot_id`` unused)."""
        if special_tokens not in ("clip", "post_processor"):
            raise ValueError(f"unknown special_tokens mode {special_tokens!r}")
        if clean not in ("lower", "whitespace", "canonicalize"):
            raise ValueError(f"unknown text cleaning {clean!r} (lower, whitespace or canonicalize)")
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self.context_length = context_length
        self.sot_id = sot_id
        self.eot_id = eot_id
        self.pad_id = pad_id
        self.clean = clean
        self.special_tokens = special_tokens
        self._n_special = tokenizer.num_special_tokens_to_add(False) if special_tokens != "clip" else 2
        if self._n_special >= context_length:
            raise ValueError(f"context length {context_length} leaves no room for text")

    @classmethod
    def from_dir(
        cls, textual_dir: Path, context_length: int | None = None, clean: str | None = None
    ) -> ClipTokenizer:
        """Load ``tokenizer.json`` and ``tokenizer_config.json`` (Hugging Face / Immich layout).

        ``clean`` defaults to open_clip's: ``lower`` for the CLIP BPE, ``whitespace`` for Hugging Face
        tokenizers (the model's ``text_cfg.tokenizer_kwargs.clean`` overrides it, e.g. SigLIP's
        ``canonicalize``)."""
        tokenizer = Tokenizer.from_file(str(textual_dir / "tokenizer.json"))
        cfg_path = textual_dir / "tokenizer_config.json"
        cfg: dict[str, Any] = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        length = context_length or int(cfg.get("model_max_length") or DEFAULT_CONTEXT_LENGTH)
        if tokenizer.token_to_id(CLIP_SOT) is None:
            # A Hugging Face tokenizer: its post-processor adds the special tokens; pad as its config says.
            pad = _token_text(cfg.get("pad_token"))
            pad_id = tokenizer.token_to_id(pad) if pad else None
            if pad_id is None:
                raise ValueError(f"{cfg_path} names no pad_token that {textual_dir / 'tokenizer.json'} knows")
            eos = _token_text(cfg.get("eos_token"))
            bos = _token_text(cfg.get("bos_token"))
            eot_id = tokenizer.token_to_id(eos) if eos else None
            sot_id = tokenizer.token_to_id(bos) if bos else None
            return cls(
                tokenizer,
                context_length=length,
                sot_id=-1 if sot_id is None else sot_id,
                eot_id=-1 if eot_id is None else eot_id,
                pad_id=pad_id,
                clean=clean or "whitespace",
                special_tokens="post_processor",
            )
        bos = _token_text(cfg.get("bos_token")) or CLIP_SOT
        eos = _token_text(cfg.get("eos_token")) or CLIP_EOT
        sot_id = tokenizer.token_to_id(bos)
        eot_id = tokenizer.token_to_id(eos)
        if sot_id is None or eot_id is None:
            raise ValueError(f"{textual_dir / 'tokenizer.json'} lacks the tokens {bos!r} / {eos!r}")
        # open_clip pads with 0. CLIP pools the EOT position (argmax of the ids) behind a causal mask, so
        # the padding value never changes an embedding; 0 keeps the ids identical to open_clip's.
        return cls(
            tokenizer, context_length=length, sot_id=sot_id, eot_id=eot_id, pad_id=0, clean=clean or "lower"
        )

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, texts: Sequence[str]) -> TokenBatch:
        cleaned = [clean_text(t, self.clean) for t in texts]
        encodings = self._tok.encode_batch(cleaned, add_special_tokens=False)
        n, ctx = len(texts), self.context_length
        ids = np.full((n, ctx), self.pad_id, dtype=np.int32)
        truncated: list[bool] = []
        lengths: list[int] = []
        if self.special_tokens == "post_processor":
            for row, enc in enumerate(encodings):
                total = len(enc.ids) + self._n_special
                lengths.append(total)
                truncated.append(total > ctx)
                if total > ctx:  # what truncation=True does: cut the body, keep the special tokens
                    enc.truncate(ctx - self._n_special)
                body = self._tok.post_process(enc, add_special_tokens=True).ids
                ids[row, : len(body)] = body
            return TokenBatch(ids=ids, truncated=truncated, lengths=lengths)
        for row, enc in enumerate(encodings):
            body = enc.ids
            total = len(body) + 2
            lengths.append(total)
            truncated.append(total > ctx)
            body = body[: ctx - 2]
            ids[row, 0] = self.sot_id
            ids[row, 1 : 1 + len(body)] = body
            ids[row, 1 + len(body)] = self.eot_id
        return TokenBatch(ids=ids, truncated=truncated, lengths=lengths)


def _token_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None
