#!/usr/bin/env python
"""The cost of the decode limits (issue 23): DECODE_ISOLATION=inline against process, in one run.

    python benchmarks/decode_limits.py                 # 120 photos, 60 searches, 2 interleaved rounds
    python benchmarks/decode_limits.py --model-dir ~/.cache/clipsearch/models/ViT-B-32-random

Two paths, each as the service runs it, in this process with the settings' decoder:

- search by image: what SearchService.by_upload does per query (decode through the decoder at the
  model's reduced-decode side, then encode the one image), one query at a time: p50 and p95 latency;
- ingest: the worker's decode-and-preprocess stage feeding inference (ClipEncoder.embed_stream with the
  decoder's ``prepare`` writing each tensor and a 256 px thumbnail, as the pipeline's preparer does):
  images/s, and CPU time per photo of this process and its decode processes together.

CPU time is the figure to trust on a busy machine: wall-clock rates there follow the scheduler's share,
which grows with the number of runnable threads and processes (the pool has more of them).

Photos are generated JPEGs of 640 to 2048 px (benchmarks/encoder.make_jpegs). The tiny test model is
the default: its inference is nearly free, so the decode path's share, and so the relative cost of the
limits, is the largest it can be; a real model hides more of it behind inference. Each measurement runs
in a fresh process; rounds alternate the two modes and each figure is its best round (noise on a shared
machine only slows a measure down).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.encoder import make_jpegs  # noqa: E402
from benchmarks.table import print_table  # noqa: E402
from indexer.model.encoder import ClipEncoder  # noqa: E402
from indexer.model.files import tiny_model_dir  # noqa: E402
from indexer.model.loader import load_encoder  # noqa: E402
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
        i = 0
        for size in encoder.batch_plan(len(photos)):  # as the worker's read stage cuts a chunk
            yield photos[i : i + size]
            i += size

    def prepare(data: bytes, slot: np.ndarray) -> None:
        encoder.decoder.prepare(
            data, MAX_PIXELS, cfg, slot, min_side=encoder.min_decode_side, thumbnail_size=THUMBNAIL
        )

    cpu = _cpu_s()
    started = time.perf_counter()
    done = sum(len(batch) for batch, _ in encoder.embed_stream(batches(), prepare))
    seconds = time.perf_counter() - started
    return done / seconds, (_cpu_s() - cpu) * 1000 / done


def measure(args: argparse.Namespace) -> dict[str, object]:
    """One mode in this process: its search latencies and its ingest rate and CPU."""
    photos = make_jpegs(args.photos)
    settings = Settings(model_dir=args.model_dir, onnx_threads=args.threads, decode_isolation=args.one)
    encoder = load_encoder(settings, lanes=0)
    encoder.load()
    search_latencies(encoder, photos[:4])  # sessions, decode processes and caches warm
    ingest_rate(encoder, photos[:8])
    cpu = _cpu_s()
    latencies = search_latencies(encoder, photos[: args.searches])
    search_cpu = (_cpu_s() - cpu) * 1000 / args.searches
    rate, cpu = ingest_rate(encoder, photos)
    return {"search": latencies, "search_cpu": search_cpu, "rate": rate, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--searches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-dir", type=Path, default=tiny_model_dir())
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # one measurement (a child)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args)))
        return

    # Each measurement in a fresh process of its own, so that one mode's sessions and threads cannot
    # slow the other's; the modes alternate.
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        for mode in MODES:
            argv = [sys.executable, __file__, "--one", mode, "--photos", str(args.photos)]
            argv += ["--searches", str(args.searches), "--model-dir", str(args.model_dir)]
            argv += ["--threads", str(args.threads)]
            out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
            run = json.loads(out.strip().splitlines()[-1])
            runs[mode].append(run)
            p50 = statistics.median(run["search"]) * 1000
            print(
                f"round {round_ + 1} {mode:8s} search p50 {p50:6.2f} ms  "
                f"ingest {run['rate']:6.1f} img/s {run['cpu']:5.1f} ms CPU",
                flush=True,
            )

    def p(mode: str, q: int) -> float:
        return min(statistics.quantiles(r["search"], n=100)[q - 1] for r in runs[mode]) * 1000

    rate = {mode: max(r["rate"] for r in runs[mode]) for mode in MODES}
    cpu = {mode: min(r["cpu"] for r in runs[mode]) for mode in MODES}
    rows = [
        [
            f"search by image p{q} (ms)",
            *(f"{p(m, q):.2f}" for m in MODES),
            f"{p('process', q) - p('inline', q):+.2f} ms",
        ]
        for q in (50, 95)
    ]
    search_cpu = {mode: min(r["search_cpu"] for r in runs[mode]) for mode in MODES}
    rows.append(
        [
            "search by image CPU (ms)",
            *(f"{search_cpu[m]:.1f}" for m in MODES),
            f"{search_cpu['process'] - search_cpu['inline']:+.1f} ms",
        ]
    )
    rows.append(
        [
            "ingest decode+prep (img/s)",
            *(f"{rate[m]:.1f}" for m in MODES),
            f"{(rate['process'] / rate['inline'] - 1) * 100:+.1f} %",
        ]
    )
    rows.append(
        [
            "ingest CPU per photo (ms)",
            *(f"{cpu[m]:.1f}" for m in MODES),
            f"{cpu['process'] - cpu['inline']:+.1f} ms",
        ]
    )
    print(
        f"\n{args.photos} photos 640-2048 px, {args.searches} searches, model {args.model_dir.name}, "
        f"{args.threads} threads, load average {os.getloadavg()[0]:.1f}"
    )
    print_table(["measure", "inline", "process", "cost"], rows, right={1, 2, 3}, markdown=True)


if __name__ == "__main__":
    main()
