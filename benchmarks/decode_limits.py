#!/usr/bin/env python
"""The cost of the decode limits (issue 23): DECODE_ISOLATION=inline against process, in one run.

    python benchmarks/decode_limits.py                 # 120 photos, 60 searches, 2 interleaved rounds
    python benchmarks/decode_limits.py --model-dir ~/.cache/clipsearch/models/ViT-B-32-random

Two paths, each as the service runs it, in this process with the settings' decoder:

- search by image: what SearchService.by_upload does per query (decode through the decoder at the
  model's reduced-decode side, then encode the one image), one query at a time: p50 and p95 latency;
- ingest: the worker's decode-and-preprocess stage feeding inference (ClipEncoder.embed_stream with the
  decoder's ``prepare`` writing each tensor and a 256 px thumbnail, as indexer.ingest's preparer does):
  images/s, and CPU time per photo of this process and its decode processes together.

Photos are generated JPEGs of 640 to 2048 px (benchmarks/encoder.make_jpegs). The tiny test model is
the default: its inference is nearly free, so the decode path's share, and so the relative cost of the
limits, is the largest it can be; a real model hides more of it behind inference. Rounds interleave the
two modes and each figure is its best round (noise on a shared machine only slows a measure down).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.encoder import make_jpegs  # noqa: E402
from benchmarks.table import print_table  # noqa: E402
from indexer.model.encoder import ClipEncoder, load_encoder  # noqa: E402
from indexer.model.files import tiny_model_dir  # noqa: E402
from indexer.settings import Settings  # noqa: E402

MAX_PIXELS = 64_000_000
THUMBNAIL = 256
MODES = ("inline", "process")


def _cpu_s() -> float:
    """CPU seconds of this process and of its live children (the decode processes)."""
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    total = time.process_time()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def search_latencies(encoder: ClipEncoder, photos: list[bytes]) -> list[float]:
    took = []
    for data in photos:
        started = time.perf_counter()
        image = encoder.decoder.decode(data, MAX_PIXELS, min_side=encoder.min_decode_side)
        encoder.encode_images([image.pixels])
        took.append(time.perf_counter() - started)
    return took


def ingest_rate(encoder: ClipEncoder, photos: list[bytes]) -> tuple[float, float]:
    """(images/s, CPU ms per photo) of the decode-and-preprocess stage feeding inference."""
    cfg = encoder.preprocess_cfg

    def batches() -> Iterator[list[bytes]]:
        handed = 0
        i = 0
        while i < len(photos):
            size = encoder.stream_batch_size(handed)
            yield photos[i : i + size]
            i += size
            handed += 1

    def prepare(data: bytes, slot: np.ndarray) -> None:
        encoder.decoder.prepare(
            data, MAX_PIXELS, cfg, slot, min_side=encoder.min_decode_side, thumbnail_size=THUMBNAIL
        )

    cpu = _cpu_s()
    started = time.perf_counter()
    done = sum(len(batch) for batch, _ in encoder.embed_stream(batches(), prepare))
    seconds = time.perf_counter() - started
    return done / seconds, (_cpu_s() - cpu) * 1000 / done


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--searches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-dir", type=Path, default=tiny_model_dir())
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    photos = make_jpegs(args.photos)
    queries = photos[: args.searches]
    encoders = {
        mode: load_encoder(
            Settings(model_dir=args.model_dir, onnx_threads=args.threads, decode_isolation=mode), lanes=0
        )
        for mode in MODES
    }
    for encoder in encoders.values():  # sessions loaded, decode processes started, caches warm
        encoder.load()
        search_latencies(encoder, photos[:4])
        ingest_rate(encoder, photos[:8])
    search: dict[str, list[list[float]]] = {mode: [] for mode in MODES}
    ingest: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode, encoder in encoders.items():
            search[mode].append(search_latencies(encoder, queries))
            ingest[mode].append(ingest_rate(encoder, photos))
            rate, cpu = ingest[mode][-1]
            p50 = statistics.median(search[mode][-1]) * 1000
            print(
                f"round {round_ + 1} {mode:8s} search p50 {p50:6.2f} ms  "
                f"ingest {rate:6.1f} img/s {cpu:5.1f} ms CPU"
            )

    def p(mode: str, q: float) -> float:
        return min(statistics.quantiles(r, n=100)[q - 1] for r in search[mode]) * 1000

    best_rate = {mode: max(r for r, _ in ingest[mode]) for mode in MODES}
    best_cpu = {mode: min(c for _, c in ingest[mode]) for mode in MODES}
    rows = [
        [
            "search by image p50 (ms)",
            *(f"{p(m, 50):.2f}" for m in MODES),
            f"{p('process', 50) - p('inline', 50):+.2f} ms",
        ],
        [
            "search by image p95 (ms)",
            *(f"{p(m, 95):.2f}" for m in MODES),
            f"{p('process', 95) - p('inline', 95):+.2f} ms",
        ],
        [
            "ingest decode+prep (img/s)",
            *(f"{best_rate[m]:.1f}" for m in MODES),
            f"{(best_rate['process'] / best_rate['inline'] - 1) * 100:+.1f} %",
        ],
        [
            "ingest CPU per photo (ms)",
            *(f"{best_cpu[m]:.1f}" for m in MODES),
            f"{best_cpu['process'] - best_cpu['inline']:+.1f} ms",
        ],
    ]
    model = args.model_dir.name
    print(
        f"\n{args.photos} photos 640-2048 px, {args.searches} searches, model {model}, {args.threads} threads"
    )
    print_table(["measure", "inline", "process", "cost"], rows, right={1, 2, 3}, markdown=True)


if __name__ == "__main__":
    main()
