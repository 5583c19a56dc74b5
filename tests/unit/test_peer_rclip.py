"""benchmarks/peer_rclip.py: rclip's layout of a clipsearch model runs the same graph with the same weights
(rclip's input and output names, int64 token ids), and is written once."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.peer_rclip import RCLIP_MODEL_SUBDIR, RCLIP_VOCAB, rclip_models
from indexer.model.files import tiny_model_dir


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_rclip_layout_runs_the_same_graphs(tmp_path: Path) -> None:
    model = tiny_model_dir()
    out = rclip_models(model, tmp_path)

    ours = _session(model / "visual" / "model.onnx")
    theirs = _session(out / RCLIP_MODEL_SUBDIR / "visual.onnx")
    assert [i.name for i in theirs.get_inputs()] == ["input"]
    assert [o.name for o in theirs.get_outputs()] == ["output"]
    size = ours.get_inputs()[0].shape[2]
    images = np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32)
    (expected,) = ours.run(None, {ours.get_inputs()[0].name: images})
    (got,) = theirs.run(None, {"input": images})
    np.testing.assert_array_equal(got, expected)

    ours = _session(model / "textual" / "model.onnx")
    theirs = _session(out / RCLIP_MODEL_SUBDIR / "textual.onnx")
    assert theirs.get_inputs()[0].name == "input"
    assert theirs.get_inputs()[0].type == "tensor(int64)"  # rclip's tokenizer returns int64 ids
    tokens = np.zeros((2, 77), dtype=np.int64)
    tokens[:, 0], tokens[0, 1:4], tokens[0, 4], tokens[1, 1] = 49406, [320, 1125, 539], 49407, 49407
    (expected,) = ours.run(None, {ours.get_inputs()[0].name: tokens.astype(np.int32)})
    (got,) = theirs.run(None, {"input": tokens})
    np.testing.assert_array_equal(got, expected)


def test_bpe_vocab_holds_the_tokenizer_merges_in_order(tmp_path: Path) -> None:
    model = tiny_model_dir()
    out = rclip_models(model, tmp_path)
    with gzip.open(out / RCLIP_VOCAB, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = json.loads((model / "textual" / "tokenizer.json").read_text())["model"]["merges"]
    # rclip (as open_clip) skips the header line and reads the next 49152 - 256 - 2 merges
    assert lines[0].startswith("#version")
    assert lines[1 : 1 + len(merges)] == [" ".join(m) for m in merges]
    assert len(merges) == 49152 - 256 - 2


def test_written_once_per_export(tmp_path: Path) -> None:
    model = tiny_model_dir()
    first = rclip_models(model, tmp_path)
    visual = first / RCLIP_MODEL_SUBDIR / "visual.onnx"
    stamp = visual.stat().st_mtime_ns
    assert rclip_models(model, tmp_path) == first
    assert visual.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no work directory left behind
