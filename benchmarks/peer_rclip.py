"""rclip as the peer of benchmarks/ingest.py: the same model in rclip's layout, and rclip timed on a folder.

rclip (3.3) runs ONNX exports of ViT-B-32-256 from its own data directory::

    $RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/visual.onnx    input "input" float32 [N,3,256,256]
    $RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/textual.onnx   input "input" int64 [N,77]
    $RCLIP_DATADIR/tokenizer/bpe_simple_vocab_16e6.txt.gz          the CLIP BPE merges
    $RCLIP_DATADIR/db.sqlite3                                      its index

and downloads them from the hub when they are missing. Here they are derived from clipsearch's own model
directory (Immich's layout) by renaming the graphs' inputs and outputs, so both run one graph with the
same weights; rclip normalises the (already normalised) embedding once more, which costs nothing. The
peer runs in its own environment (scripts/build_peer_rclip.sh), never in clipsearch's: the timed script,
benchmarks/rclip_index.py, imports only rclip.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto, helper

RCLIP_MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"
RCLIP_VOCAB = Path("tokenizer") / "bpe_simple_vocab_16e6.txt.gz"
INDEX_SCRIPT = Path(__file__).resolve().parent / "rclip_index.py"


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename one tensor everywhere in a graph (inputs, outputs, node ends)."""
    for value in [*graph.input, *graph.output]:
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _visual_for_rclip(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    _rename(model.graph, model.graph.input[0].name, "input")
    _rename(model.graph, model.graph.output[0].name, "output")
    onnx.save(model, str(dst))


def _textual_for_rclip(src: Path, dst: Path) -> None:
    """rclip feeds int64 token ids; the Immich-layout export takes int32: one Cast in front."""
    model = onnx.load(str(src))
    graph = model.graph
    old = graph.input[0]
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    if old.type.tensor_type.elem_type == TensorProto.INT64:
        _rename(graph, old.name, "input")
    else:
        cast = helper.make_node("Cast", ["input"], [old.name], to=old.type.tensor_type.elem_type)
        graph.node.insert(0, cast)
        graph.input.remove(old)
        graph.input.insert(0, helper.make_tensor_value_info("input", TensorProto.INT64, dims))
    _rename(graph, graph.output[0].name, "output")
    onnx.save(model, str(dst))


def _bpe_vocab(tokenizer_json: Path, dst: Path) -> None:
    """open_clip's bpe_simple_vocab_16e6.txt.gz (a header line, then one merge a line) from tokenizer.json."""
    merges = json.loads(tokenizer_json.read_text())["model"]["merges"]
    lines = [m if isinstance(m, str) else " ".join(m) for m in merges]
    with gzip.open(dst, "wt", encoding="utf-8") as fh:
        fh.write("#version: 0.2\n" + "\n".join(lines) + "\n")


def rclip_models(model_dir: Path, cache: Path) -> Path:
    """rclip's model files for `model_dir`, written once under `cache` (keyed by the visual export's size
    and mtime); returns the directory that holds RCLIP_MODEL_SUBDIR and the tokenizer."""
    visual = model_dir / "visual" / "model.onnx"
    stat = visual.stat()
    out = cache / f"{model_dir.name}-{stat.st_size}-{int(stat.st_mtime)}"
    if (out / RCLIP_MODEL_SUBDIR / "visual.onnx").is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".rclip-models-", dir=cache))
    try:
        (work / RCLIP_MODEL_SUBDIR).mkdir(parents=True)
        (work / RCLIP_VOCAB.parent).mkdir(parents=True)
        _visual_for_rclip(visual, work / RCLIP_MODEL_SUBDIR / "visual.onnx")
        _textual_for_rclip(model_dir / "textual" / "model.onnx", work / RCLIP_MODEL_SUBDIR / "textual.onnx")
        _bpe_vocab(model_dir / "textual" / "tokenizer.json", work / RCLIP_VOCAB)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


@dataclass(frozen=True)
class RclipRun:
    images: int
    index_s: float  # rclip's ensure_index alone, model loaded and warmed
    index_cpu_s: float  # the CPU time of its threads meanwhile (the load of other processes aside)
    process_s: float  # the whole process: interpreter, imports, model load, warm-up, index

    @property
    def rate(self) -> float:
        return self.images / self.index_s

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.index_cpu_s / self.images


def rclip_index(python: Path, models: Path, folder: Path, batch: int | None = None) -> RclipRun:
    """Index `folder` with rclip in a fresh data directory (the model files linked in, an empty index)."""
    with tempfile.TemporaryDirectory(prefix="rclip-datadir-") as datadir:
        for rel in (Path(RCLIP_MODEL_SUBDIR), RCLIP_VOCAB.parent):
            os.symlink(models / rel, Path(datadir) / rel)
        env = {**os.environ, "RCLIP_DATADIR": datadir, "HF_HUB_OFFLINE": "1"}
        command = [str(python), str(INDEX_SCRIPT), str(folder.resolve())]
        if batch is not None:
            command += ["--batch", str(batch)]
        done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        report = json.loads(done.stdout.strip().splitlines()[-1])
    return RclipRun(
        int(report["images"]),
        float(report["index_s"]),
        float(report["index_cpu_s"]),
        float(report["process_s"]),
    )
