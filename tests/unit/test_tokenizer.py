"""The CLIP BPE through `tokenizers` gives open_clip's ids, truncation and padding."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.model.files import tiny_model_dir
from indexer.model.tokenizer import ClipTokenizer, clean_text
from tests.unit.clip_helpers import reference, text_tokens

SOT, EOT = 49406, 49407


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return ClipTokenizer.from_dir(tiny_model_dir() / "textual")


def test_real_clip_vocabulary(tok: ClipTokenizer) -> None:
    assert tok.vocab_size == 49408
    assert (tok.sot_id, tok.eot_id, tok.pad_id, tok.context_length) == (SOT, EOT, 0, 77)


def test_ids_identical_to_open_clip(tok: ClipTokenizer) -> None:
    texts = [t["text"] for t in reference()["texts"]]
    batch = tok.encode(texts)
    expected = text_tokens()
    assert batch.ids.dtype == np.int32 and batch.ids.shape == expected.shape
    for i, text in enumerate(texts):
        assert batch.ids[i].tolist() == expected[i].tolist(), text


def test_truncation_flags_and_lengths(tok: ClipTokenizer) -> None:
    texts = reference()["texts"]
    batch = tok.encode([t["text"] for t in texts])
    assert batch.truncated == [t["truncated"] for t in texts]
    assert batch.lengths == [t["n_tokens"] for t in texts]
    assert any(batch.truncated) and not all(batch.truncated)


def test_context_boundary(tok: ClipTokenizer) -> None:
    fits, cut = tok.encode(["cat " * 75, "cat " * 76]).ids, tok.encode(["cat " * 76])
    assert fits[0, 0] == SOT and fits[0, 76] == EOT and cut.truncated == [True]
    row = cut.ids[0]
    assert row[0] == SOT and row[76] == EOT and (row[1:76] == fits[0, 1:76]).all()  # last token forced to EOT
    assert not tok.encode(["cat " * 75]).truncated[0]


def test_padding_and_empty(tok: ClipTokenizer) -> None:
    batch = tok.encode(["", "a"])
    assert batch.ids[0, :3].tolist() == [SOT, EOT, 0]
    assert batch.ids[1, 2] == EOT and not batch.ids[1, 3:].any()
    assert batch.lengths == [2, 3]


def test_cleaning_matches_open_clip() -> None:
    assert clean_text("  Tom &amp;amp; JERRY\n\t ") == "tom & jerry"
    assert clean_text("\u201ccurly\u201d \ufb01ne") == '"curly" fine'
    assert clean_text("Ã©tÃ©") == "été"
    assert clean_text("Hello_World, again!", "canonicalize") == "hello world again"
    assert clean_text("  Keep   Case ", "whitespace") == "Keep Case"


def test_unicode_and_long_inputs(tok: ClipTokenizer) -> None:
    batch = tok.encode(["東京の夜景 🐱", "x" * 5000, "word " * 3000])
    assert all(row[0] == SOT for row in batch.ids)
    assert batch.truncated == [False, True, True]
