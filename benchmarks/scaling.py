#!/usr/bin/env python
"""Ingest scaling with the number of workers: N worker processes with T ONNX threads each, same cores.

    python benchmarks/scaling.py                          # 1 worker x 2 threads against 2 workers x 1
    python benchmarks/scaling.py --configs 1x2 2x1 4x1    # on a bigger machine

With onnxruntime-gpu installed the sessions run on CUDA by themselves (indexer/model/sessions.py).

For each configuration (workers x ONNX threads) a local stack starts (Redis, Weaviate, the API and that
many Celery workers, each with its own ONNX session), and the same generated JPEGs (640 to 2048 px)
go through `POST /collections/<c>/folder` and through the CLI's upload, HTTP to searchable, in rounds;
each row is the best round (noise on a shared machine only ever slows a run down), every round printed.
The raw session at the total thread count is the reference. The cost of `duplicates` at 10k and 100k
images is benchmarks/similarity.py (`--scales 10000 100000`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.encoder import DEFAULT_BIG, make_jpegs  # noqa: E402
from benchmarks.ingest import (  # noqa: E402
    RAW_BATCH,
    cli_images_per_s,
    folder_images_per_s,
    raw_images_per_s,
    warm_text_search,
)
from benchmarks.table import print_table  # noqa: E402
from clipsearch.processes import free_port  # noqa: E402
from clipsearch.stack import LocalStack  # noqa: E402
from indexer.model.files import tiny_model_dir  # noqa: E402
from indexer.settings import Settings  # noqa: E402


def parse_config(text: str) -> tuple[int, int]:
    workers, _, threads = text.partition("x")
    return int(workers), int(threads or "1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir", type=Path, default=DEFAULT_BIG if DEFAULT_BIG.is_dir() else tiny_model_dir()
    )
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--configs", nargs="*", default=["1x2", "2x1"], help="WORKERSxTHREADS")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    jpegs = make_jpegs(args.images)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="clipsearch-scaling-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i, data in enumerate(jpegs):
            (folder / f"s{i:04d}.jpg").write_bytes(data)
        for config in args.configs:
            workers, threads = parse_config(config)
            os.environ.update(
                {
                    "DATA_DIR": str(Path(tmp) / f"data-{config}"),
                    "MODEL_DIR": str(args.model_dir),
                    "MODEL_PRECISION": args.precision,
                    "ONNX_THREADS": str(threads),
                    "API_PORT": str(free_port()),
                    "FOLDER_ROOTS": str(folder),
                }
            )
            settings = Settings()
            stack = LocalStack(settings)
            stack.start()
            try:
                for _ in range(workers - 1):
                    stack.start_worker()
                stack.wait_healthy()
                warm_text_search(stack.api_url)
                by_folder, by_cli = [], []
                for _ in range(args.rounds):
                    by_folder.append(folder_images_per_s(stack.api_url, folder, len(jpegs)))
                    by_cli.append(cli_images_per_s(stack.api_url, folder, upload=True))
            finally:
                stack.stop()
            raw = raw_images_per_s(settings.model_copy(update={"onnx_threads": workers * threads}), RAW_BATCH)
            label = f"{workers} worker(s) x {threads} ONNX thread(s)"
            rounds = " / ".join(f"{r:.1f}" for r in by_folder)
            rows.append((f"{label}: folder route", f"{max(by_folder):.1f}", f"img/s (rounds {rounds})"))
            rounds = " / ".join(f"{r:.1f}" for r in by_cli)
            rows.append((f"{label}: CLI upload", f"{max(by_cli):.1f}", f"img/s (rounds {rounds})"))
            rows.append((f"{label}: raw session, {workers * threads} threads", f"{raw:.1f}", "img/s"))
            print(*rows[-3:], sep="\n", flush=True)
    print(f"\nmodel: {args.model_dir.name} {args.precision}, {len(jpegs)} JPEGs, cpu: {os.cpu_count()}")
    print_table(("measure", "value", "unit"), rows, right={1})


if __name__ == "__main__":
    main()
