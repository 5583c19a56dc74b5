#!/usr/bin/env python
"""End-to-end ingest throughput and text-query latency over HTTP, against the real local stack.

    python benchmarks/ingest.py          # 300 JPEGs, fp32 and int8, 3 rounds, queries at 10k and 100k
    python benchmarks/ingest.py --images 64 --scales 10000
    python benchmarks/ingest.py --scales --model-dir ~/.cache/clipsearch/models/ViT-B-32-random
    python benchmarks/ingest.py --images 600 --long-side 224 1024 --precisions fp32 --rounds 2 --scales \
        --rclip-python ~/.cache/clipsearch/peer-rclip/bin/python     # beside rclip 3.3, same model

The model is the issue's random-weight ViT-B-32-256 (ISSUE_MODEL) when it is there, else the random
ViT-B/32 at 224 px (DEFAULT_BIG), else the tiny test model. At 224 px inference costs about a quarter
less per image while decoding and the rest cost the same, so its ratios are the stricter ones.

For each precision: the raw ONNX session's images/s (preprocessed tensors, no decode; batch 32, the issue's
reference, one batch at a time and one per inference lane, and at the worker's own batch size and lanes,
which run faster per image on CPU) is measured in this process, then N generated JPEGs (640 to 2048 px,
from benchmarks/encoder) go through HTTP upload, the Redis queue and one Celery worker until the job is
complete and searchable. The ratio e2e / raw is the goal (>= 0.9 fp32, >= 0.85 int8). Both use the same
ONNX thread count, one at a time.
The CLI row times what `clipsearch index DIR` does by default (here it registers the folder, which lies
under the service's FOLDER_ROOTS); the `--upload` row times the upload path on its own.
Raw, CLI, CLI --upload and folder run in interleaved rounds (--rounds) and the ratios compare each
measure's best round (noise on a shared machine only slows a measure down); every round's figure is
printed beside it.

With --rclip-python (rclip 3.3's environment, scripts/build_peer_rclip.sh), each fp32 round also times
rclip indexing the same folder into a fresh data directory, on the same model (benchmarks/peer_rclip.py
derives rclip's layout from --model-dir, which must then be a 256 px ViT-B/32), and every route is printed
as a ratio of rclip's best round. rclip is timed from its ensure_index call with its session loaded and
warm (the worker's is warm too), so its start-up is not counted against it.

Query latency: synthetic unit vectors (standard normal, normalised, seeded) are written straight into the
collection's Weaviate objects until it holds 10k, then 100k images; then POST /search/text is timed for
distinct texts (encoder + Weaviate) and for repeated texts (text-embedding cache hit).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.encoder import DEFAULT_BIG, make_jpegs  # noqa: E402
from benchmarks.peer_rclip import rclip_index, rclip_models  # noqa: E402
from benchmarks.synthetic import fill  # noqa: E402
from benchmarks.table import print_table  # noqa: E402
from clipsearch.client import ENDED_STATES, ApiClient, image_files  # noqa: E402
from clipsearch.index_dir import start_index  # noqa: E402
from clipsearch.processes import free_port  # noqa: E402
from clipsearch.stack import LocalStack  # noqa: E402
from indexer.model.files import model_id_for_dir, quantized_dir, tiny_model_dir  # noqa: E402
from indexer.model.loader import load_encoder  # noqa: E402
from indexer.model.quantize import quantize_model_dir  # noqa: E402
from indexer.settings import Settings  # noqa: E402
from indexer.store.connection import connect  # noqa: E402
from indexer.store.images import ImageStore  # noqa: E402

RAW_BATCH = 32  # the issue's reference: the raw session at batch 32
# The issue's model: a random-weight ViT-B-32-256 (256 px input), the compute of a trained one; write it
# with `scripts/make_tiny_model.py --no-tiny --vit-b32-256 <this dir>` (the reference environment).
ISSUE_MODEL = DEFAULT_BIG.parent / "ViT-B-32-256-random"


def raw_images_per_s(settings: Settings, batch: int, seconds: float = 8.0, lanes: int = 1) -> float:
    """Preprocessed tensors through the image session alone: one batch at a time on ONNX_THREADS threads
    (lanes=1), or `lanes` batches at once on one session, each on ONNX_THREADS / lanes threads (what a
    worker runs with INFERENCE_LANES)."""
    encoder = load_encoder(settings, lanes=lanes)
    size = encoder.image_size
    tensor = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    encoder.encode_preprocessed(tensor)  # warm-up
    done = [0] * lanes
    start = time.perf_counter()
    stop = start + seconds

    def lane(i: int) -> None:
        while time.perf_counter() < stop:
            encoder.encode_preprocessed(tensor)
            done[i] += batch

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = sum(done) / (time.perf_counter() - start)
    encoder.close()
    return rate


def _ratios(rate: float, raw: float, own: float | None) -> str:
    """The unit column of a route: its ratio to the raw ceiling, and to the worker's own raw session."""
    worker = f", {rate / own:.2f} of the worker's raw" if own else ""
    return f"img/s ({rate / raw:.2f} of raw{worker})"


def _wait_searchable(base: str, name: str, jobs: list[str], expected: int) -> None:
    """Wait for the jobs through the API's long polling (GET /jobs/<id>?wait=...), which answers as soon
    as a job ends: no polling interval in the measure, and no polling load on the stack it measures."""
    done = 0
    for job in jobs:
        while (report := requests.get(f"{base}/jobs/{job}", params={"wait": 30}, timeout=60).json())[
            "state"
        ] not in ENDED_STATES:
            time.sleep(0.05)
        done += report["done"]
    assert done == expected, (done, expected)
    hits = requests.post(
        f"{base}/search/text", json={"collection": name, "query": "x", "limit": 1}, timeout=60
    )
    assert hits.json()["count"] == 1


def warm_text_search(base: str) -> None:
    """One text search before any clock starts: the API loads its text encoder on the first query, a
    once-per-process cost that would otherwise land on whichever route is timed first."""
    name = f"warm-{uuid.uuid4().hex[:6]}"
    requests.post(f"{base}/collections", json={"name": name}, timeout=60).raise_for_status()
    response = requests.post(
        f"{base}/search/text", json={"collection": name, "query": "warm up", "limit": 1}, timeout=120
    )
    assert response.status_code == 200, response.text
    requests.delete(f"{base}/collections/{name}", timeout=60)


def cli_images_per_s(base: str, folder: Path, upload: bool) -> float:
    """What `clipsearch index DIR` does (clipsearch/index_dir.py: the folder registered when the service
    reads it itself, as here where it lies under FOLDER_ROOTS; with upload=True, `--upload`: one request per
    INGEST_CHUNK_SIZE files, the worker starting on the first while the rest upload); the clock stops once
    every image is searchable."""
    name = f"cli-{uuid.uuid4().hex[:6]}"
    api = ApiClient(base, None)
    api.ensure_collection(name)
    start = time.perf_counter()
    paths = list(image_files(folder))
    started = start_index(api, name, folder, paths, upload=upload)
    assert not started.refused, started.refused
    assert (started.registered is None) == upload, started.registered
    _wait_searchable(base, name, started.jobs, len(paths))
    return len(paths) / (time.perf_counter() - start)


def folder_images_per_s(base: str, folder: Path, count: int) -> float:
    """POST /collections/<c>/folder for the same files, to searchable."""
    name = f"dir-{uuid.uuid4().hex[:6]}"
    requests.post(f"{base}/collections", json={"name": name}, timeout=60).raise_for_status()
    start = time.perf_counter()
    response = requests.post(f"{base}/collections/{name}/folder", json={"path": str(folder)}, timeout=300)
    response.raise_for_status()
    _wait_searchable(base, name, [response.json()["job_id"]], count)
    return count / (time.perf_counter() - start)


def tree_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) of a process and all its living descendants: here, this benchmark and
    the stack it started (API, worker and its decode processes, Weaviate, Redis). Unlike a rate, a
    difference of two readings is what a measure cost, whatever else the shared machine runs."""
    pid = os.getpid() if pid is None else pid
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                total += tree_cpu_s(int(child))
    except OSError:  # it ended meanwhile
        return 0.0
    return total


def _cpu_ms_per_image(measure: Callable[[], float], count: int, into: list[float]) -> float:
    """Run a route's measure and append what the whole stack spent on it per image, in CPU ms."""
    before = tree_cpu_s()
    rate = measure()
    into.append(1000 * (tree_cpu_s() - before) / count)
    return rate


def worker_peak_rss_mib(stack: LocalStack) -> float:
    """The largest VmHWM (peak resident set) among the workers' pool processes, in MiB."""
    peak = 0
    for worker in stack.workers:
        if worker.pid is None:
            continue
        for child in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split():
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    return peak / 1024


def fill_collection(settings: Settings, collection: str, model_id: str, dim: int, target: int) -> None:
    """Insert synthetic unit vectors until the collection holds `target` objects."""
    client = connect(settings)
    try:
        fill(ImageStore(client, model_id), collection, dim, target)
    finally:
        client.close()


def query_latency(base: str, collection: str, n: int, distinct: bool, tag: str = "") -> tuple[float, float]:
    times = []
    for i in range(n):
        text = f"a photo of thing number {i} of {tag}" if distinct else "a photo of a dog on a beach"
        t0 = time.perf_counter()
        response = requests.post(
            f"{base}/search/text", json={"collection": collection, "query": text, "limit": 20}, timeout=60
        )
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument(
        "--long-side",
        type=int,
        nargs=2,
        default=(640, 2048),
        metavar=("MIN", "MAX"),
        help="the generated photos' long side in px (the issue's second corpus: 224 1024)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=next((d for d in (ISSUE_MODEL, DEFAULT_BIG) if d.is_dir()), None) or tiny_model_dir(),
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--scales", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--precisions", nargs="*", default=["fp32", "int8"])
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of raw, CLI, CLI --upload and folder"
    )
    parser.add_argument(
        "--rclip-python",
        type=Path,
        default=None,
        help="rclip 3.3's interpreter (scripts/build_peer_rclip.sh): also time rclip on the fp32 rounds",
    )
    parser.add_argument("--rclip-batch", type=int, default=8, help="rclip's --indexing-batch-size")
    parser.add_argument("--no-upload", action="store_true", help="skip the `--upload` route")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rclip_dir = None
    if args.rclip_python is not None:
        rclip_dir = rclip_models(args.model_dir, Settings().cache_dir / "peer-rclip-models")

    jpegs = make_jpegs(args.images, long_sides=tuple(args.long_side))
    rows: list[tuple[str, str, str]] = []
    for precision in args.precisions:
        with tempfile.TemporaryDirectory(prefix="clipsearch-bench-") as tmp:
            folder = Path(tmp) / "photos"
            folder.mkdir()
            for i, data in enumerate(jpegs):
                (folder / f"b{i:04d}.jpg").write_bytes(data)
            env = {
                "DATA_DIR": str(Path(tmp) / "data"),
                "MODEL_DIR": str(args.model_dir),
                "MODEL_PRECISION": precision,
                "ONNX_THREADS": str(args.threads),
                "API_PORT": str(free_port()),
                "FOLDER_ROOTS": str(folder),
            }
            os.environ.update(env)
            settings = Settings()
            if precision == "int8":
                qdir = quantized_dir(settings, model_id_for_dir(args.model_dir, settings))
                if not (qdir / "visual" / "model.onnx").is_file():
                    quantize_model_dir(args.model_dir, qdir)
            stack = LocalStack(settings)
            stack.start()
            try:
                stack.wait_healthy()
                warm_text_search(stack.api_url)
                # Rounds of (raw, CLI, folder), interleaved: on a shared machine the load moves, and noise
                # only ever slows a measure down, so each measure's best round is the closest to its quiet
                # rate; the ratios compare best with best (every round is printed, so the spread shows).
                raws: list[float] = []
                clis: list[float] = []
                uploads: list[float] = []
                folders: list[float] = []
                # The ceiling is the faster way to run the session alone: one batch on every thread,
                # or one batch per lane as the worker runs it (INFERENCE_LANES, auto 2 on 2+ cores).
                # Also the session as the worker runs it (its own batch size and lanes): smaller batches
                # run faster per image on CPU, so this ceiling is the stricter one where they differ.
                probe = load_encoder(settings, lanes=settings.inference_lanes)
                lanes, worker_batch = probe.lanes, probe.batch_size
                probe.close()
                own: list[float] = []
                peers: list[float] = []
                cpu_cli: list[float] = []
                cpu_folder: list[float] = []
                cpu_peer: list[float] = []
                count = len(jpegs)
                for _ in range(args.rounds):
                    raws.append(raw_images_per_s(settings, RAW_BATCH))
                    if lanes > 1:
                        raws.append(raw_images_per_s(settings, RAW_BATCH, lanes=lanes))
                    if worker_batch != RAW_BATCH:
                        own.append(raw_images_per_s(settings, worker_batch, lanes=lanes))
                    clis.append(
                        _cpu_ms_per_image(
                            partial(cli_images_per_s, stack.api_url, folder, upload=False), count, cpu_cli
                        )
                    )
                    if not args.no_upload:
                        uploads.append(cli_images_per_s(stack.api_url, folder, upload=True))
                    folders.append(
                        _cpu_ms_per_image(
                            partial(folder_images_per_s, stack.api_url, folder, count), count, cpu_folder
                        )
                    )
                    if rclip_dir is not None and precision == "fp32":
                        assert args.rclip_python is not None
                        run = rclip_index(args.rclip_python, rclip_dir, folder, args.rclip_batch)
                        assert run.images == len(jpegs), (run.images, len(jpegs))
                        peers.append(run.rate)
                        cpu_peer.append(run.cpu_ms_per_image)
                raws.append(raw_images_per_s(settings, RAW_BATCH))
                if lanes > 1:
                    raws.append(raw_images_per_s(settings, RAW_BATCH, lanes=lanes))

                def spread(rates: list[float]) -> str:
                    return " / ".join(f"{r:.1f}" for r in rates)

                raw = max(raws)
                rows.append(
                    (
                        f"ingest {precision}: raw session, batch {RAW_BATCH}, 1 and {lanes} lanes "
                        f"(best of {spread(raws)})",
                        f"{raw:.1f}",
                        "img/s",
                    )
                )
                if own:
                    rows.append(
                        (
                            f"ingest {precision}: raw session as the worker runs it, batch {worker_batch}, "
                            f"{lanes} lanes (best of {spread(own)})",
                            f"{max(own):.1f}",
                            "img/s",
                        )
                    )

                own_best = max(own) if own else None

                def of_rclip(rate: float, peer: float | None = max(peers) if peers else None) -> str:
                    return f", {rate / peer:.2f}x rclip" if peer else ""

                def of_folder(rate: float, folder_best: float = max(folders)) -> str:
                    return f", {rate / folder_best:.2f} of the folder route" + of_rclip(rate)

                rows.append(
                    (
                        f"ingest {precision}: CLI `clipsearch index` -> searchable (best of {spread(clis)})",
                        f"{max(clis):.1f}",
                        _ratios(max(clis), raw, own_best) + of_folder(max(clis)),
                    )
                )
                if uploads:
                    rows.append(
                        (
                            f"ingest {precision}: CLI `clipsearch index --upload` -> searchable "
                            f"(best of {spread(uploads)})",
                            f"{max(uploads):.1f}",
                            _ratios(max(uploads), raw, own_best) + of_folder(max(uploads)),
                        )
                    )
                rows.append(
                    (
                        f"ingest {precision}: folder route -> searchable (best of {spread(folders)})",
                        f"{max(folders):.1f}",
                        _ratios(max(folders), raw, own_best) + of_rclip(max(folders)),
                    )
                )
                if peers:
                    rows.append(
                        (
                            f"ingest {precision}: rclip 3.3 index, batch {args.rclip_batch}, same model "
                            f"(best of {spread(peers)})",
                            f"{max(peers):.1f}",
                            _ratios(max(peers), raw, own_best),
                        )
                    )
                    rows.append(
                        (
                            f"ingest {precision}: CPU per image, CLI / folder route / rclip (least of "
                            f"{spread(cpu_cli)} / {spread(cpu_folder)} / {spread(cpu_peer)})",
                            f"{min(cpu_cli):.0f} / {min(cpu_folder):.0f} / {min(cpu_peer):.0f}",
                            "ms (every process of the stack and the client; rclip's own)",
                        )
                    )
                    # each round's CLI and rclip ran minutes apart at most: their ratio per round shows
                    # how much of the best-of ratio is the load moving between rounds
                    rows.append(
                        (
                            f"ingest {precision}: CLI / rclip in each round",
                            " / ".join(f"{c / r:.2f}" for c, r in zip(clis, peers, strict=True)),
                            "x",
                        )
                    )
                rows.append(
                    (
                        f"ingest {precision}: worker peak RSS (VmHWM, pool process)",
                        f"{worker_peak_rss_mib(stack):.0f}",
                        "MiB",
                    )
                )
                if precision == args.precisions[0] and args.scales:
                    name = f"scale-{uuid.uuid4().hex[:6]}"
                    requests.post(
                        f"{stack.api_url}/collections", json={"name": name}, timeout=60
                    ).raise_for_status()
                    info = requests.get(f"{stack.api_url}/collections/{name}", timeout=60).json()
                    dim = load_encoder(settings).dim
                    stack_settings = settings.model_copy(
                        update={
                            "weaviate_url": stack.weaviate_url,
                            "weaviate_grpc_port": stack.weaviate_grpc_port,
                        }
                    )
                    for scale in args.scales:
                        t0 = time.perf_counter()
                        fill_collection(stack_settings, name, info["model_id"], dim, scale)
                        fill_s = time.perf_counter() - t0
                        p50, p99 = query_latency(
                            stack.api_url, name, args.queries, distinct=True, tag=str(scale)
                        )
                        c50, c99 = query_latency(stack.api_url, name, args.queries, distinct=False)
                        rows.append(
                            (
                                f"text query at {scale:,} images (new text)",
                                f"{p50:.1f} / {p99:.1f}",
                                "ms p50 / p99",
                            )
                        )
                        rows.append(
                            (
                                f"text query at {scale:,} images (cached text)",
                                f"{c50:.1f} / {c99:.1f}",
                                f"ms p50 / p99 (synthetic fill {fill_s:.0f} s)",
                            )
                        )
            finally:
                stack.stop()

    low, high = args.long_side
    print(f"\nmodel: {args.model_dir}  threads: {args.threads}  cpu: {os.cpu_count()}")
    print(f"photos: {args.images} JPEGs, long side {low} to {high} px")
    load_after = os.getloadavg()
    print(
        "load average (1, 5, 15 min): before "
        + " ".join(f"{x:.2f}" for x in load_before)
        + ", after "
        + " ".join(f"{x:.2f}" for x in load_after)
    )
    print_table(("measure", "value", "unit"), rows, right={1})


if __name__ == "__main__":
    main()
