"""CLIP tokenisation: the real CLIP BPE (``textual/tokenizer.json``) through the `tokenizers` library.

Text is cleaned as open_clip does before BPE (``ftfy.fix_text``, HTML unescaped twice, whitespace
collapsed, lower-cased), so ids are identical to ``open_clip.tokenize``: ``[SOT] + tokens + [EOT]``,
zero-padded to the context length (77). A text longer than that keeps its first 75 tokens and ends with
EOT, exactly like open_clip's truncation, and is reported as truncated.
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
    ) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self.context_length = context_length
        self.sot_id = sot_id
        self.eot_id = eot_id
        self.pad_id = pad_id
        self.clean = clean

    @classmethod
    def from_dir(
        cls, textual_dir: Path, context_length: int | None = None, clean: str = "lower"
    ) -> ClipTokenizer:
        """Load ``tokenizer.json`` and ``tokenizer_config.json`` (Hugging Face / Immich layout)."""
        tokenizer = Tokenizer.from_file(str(textual_dir / "tokenizer.json"))
        cfg_path = textual_dir / "tokenizer_config.json"
        cfg: dict[str, Any] = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        bos = _token_text(cfg.get("bos_token")) or "<|startoftext|>"
        eos = _token_text(cfg.get("eos_token")) or "<|endoftext|>"
        sot_id = tokenizer.token_to_id(bos)
        eot_id = tokenizer.token_to_id(eos)
        if sot_id is None or eot_id is None:
            raise ValueError(f"{textual_dir / 'tokenizer.json'} lacks the tokens {bos!r} / {eos!r}")
        length = context_length or int(cfg.get("model_max_length") or DEFAULT_CONTEXT_LENGTH)
        # open_clip pads with 0. CLIP pools the EOT position (argmax of the ids) behind a causal mask, so
        # the padding value never changes an embedding; 0 keeps the ids identical to open_clip's.
        return cls(tokenizer, context_length=length, sot_id=sot_id, eot_id=eot_id, pad_id=0, clean=clean)

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
