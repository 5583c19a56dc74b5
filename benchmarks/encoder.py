#!/usr/bin/env python
"""Encoder throughput: raw ONNX session vs the full path (JPEG decode, preprocess, inference), fp32 and int8,
and text latency.

    python benchmarks/encoder.py                       # the full-size random ViT-B/32 if generated, else tiny
    python benchmarks/encoder.py --model-dir PATH --images 96 --threads 2
    python benchmarks/encoder.py --formats             # decode ms per image: JPEG vs HEIC, AVIF, JPEG XL, DNG

Generate the full-size model with ``python scripts/make_tiny_model.py --no-tiny --vit-b32
~/.cache/clipsearch/models/ViT-B-32-random`` (reference environment). The JPEGs are the test photos
resized to random sizes between 640 and 2048 px (long side) with a little noise, quality 90.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexer.media.decode import decode_image  # noqa: E402
from indexer.model.cpu import cpu_description  # noqa: E402
from indexer.model.encoder import ClipEncoder  # noqa: E402
from indexer.model.files import tiny_model_dir  # noqa: E402
from indexer.model.preprocess import preprocess  # noqa: E402
from indexer.model.quantize import DEFAULT_SCHEMES, PROBE_TEXTS, SCHEMES, quantize_model_dir  # noqa: E402

DEFAULT_BIG = Path.home() / ".cache" / "clipsearch" / "models" / "ViT-B-32-random"
PHOTOS = ["astronaut.jpg", "coffee.jpg", "chelsea.jpg", "rocket.jpg", "hubble.jpg", "retina.jpg"]


def make_jpegs(n: int, seed: int = 0, long_sides: tuple[int, int] = (640, 2048)) -> list[bytes]:
    """`n` noisy JPEGs made from the fixture photos, their long side drawn from `long_sides` (inclusive)."""
    rng = np.random.default_rng(seed)
    sources = [np.asarray(cv2.imread(str(REPO / "tests" / "fixtures" / "images" / p))) for p in PHOTOS]
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        long_side = int(rng.integers(long_sides[0], long_sides[1] + 1))
        aspect = float(rng.choice([4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3]))
        w, h = (
            (long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side)
        )
        img = np.asarray(cv2.resize(src, (w, h), interpolation=cv2.INTER_CUBIC))
        noise = np.asarray(rng.normal(0, 4, img.shape)).astype(np.int16)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(enc.tobytes())
    return out


def best_rate(fn: Callable[[], object], n_images: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n_images / (time.perf_counter() - t0)


def embed_all(encoder: ClipEncoder, jpegs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Image vectors of the benchmark JPEGs and text vectors of the probe prompts (for cosine to fp32)."""
    out = encoder.embed_image_bytes(jpegs, max_pixels=10**9)
    images = np.stack([np.asarray(o.vector) for o in out])
    return images, encoder.encode_texts(list(PROBE_TEXTS))[0]


def bench(encoder: ClipEncoder, jpegs: list[bytes], repeat: int) -> dict[str, float]:
    """Best of ``repeat`` rounds; raw and full-path runs alternate so that load from other processes on
    the machine hits both alike."""
    h, w = encoder.preprocess_cfg.size
    rng = np.random.default_rng(1)
    n = len(jpegs)
    encoder.load()
    encoder.batch_size = 32
    inputs = {b: rng.standard_normal((b, 3, h, w)).astype(np.float32) for b in (1, 8, 32)}

    def raw(b: int) -> Callable[[], object]:
        reps = max(1, n // b)
        return lambda: [encoder.visual.run(inputs[b]) for _ in range(reps)]

    def full() -> object:
        return encoder.embed_image_bytes(jpegs, max_pixels=10**9)

    for b in (1, 8, 32):  # warm-up
        encoder.visual.run(inputs[b])
    full()
    res: dict[str, float] = {}
    for _ in range(repeat):
        for b in (1, 8, 32):
            key = f"raw b{b}"
            res[key] = max(res.get(key, 0.0), best_rate(raw(b), max(1, n // b) * b))
        res["full b32"] = max(res.get("full b32", 0.0), best_rate(full, n))
    # decode + preprocess alone, one thread (the CPU cost the pipeline has to hide)
    cfg = encoder.preprocess_cfg
    t0 = time.perf_counter()
    for data in jpegs:
        preprocess(decode_image(data, 10**9, min_side=cfg.min_decode_side).pixels, cfg)
    res["prep ms/img"] = (time.perf_counter() - t0) / n * 1000
    # text latency, one text at a time, right after an image batch
    encoder.embed_image_bytes(jpegs[:8], max_pixels=10**9)
    lat = []
    for i in range(200):
        t0 = time.perf_counter()
        encoder.encode_texts([f"a photo of a cat number {i}"])
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    res["text p50 ms"] = statistics.median(lat)
    res["text p99 ms"] = lat[int(0.99 * (len(lat) - 1))]
    encoder.close()
    return res


def decode_formats(sizes: list[tuple[int, int]], repeat: int) -> None:
    """Decode ms per image (one thread, median of ``repeat``) of the same photo at the same size in each
    format: full resolution (``min_side=None``) and the service's path (``min_side=336``, ViT-B/32's
    reduced-decode floor: JPEG's DCT scaling, a RAW's embedded preview). Needs the dev extra (pillow-heif
    and tifffile write the HEIC and DNG files)."""
    from tests import formatgen as g

    bgr = cv2.imread(str(REPO / "tests" / "fixtures" / "images" / "astronaut.jpg"))
    assert bgr is not None
    photo = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    cv2.setNumThreads(1)
    print("| size | format | kB | full-res decode ms | service decode ms (min_side 336) |")
    print("|---|---|---|---|---|")
    for w, h in sizes:
        rgb = np.asarray(cv2.resize(photo, (w, h), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        files = {
            "jpeg q90": jpeg.tobytes(),
            "heic q90": g.heic(rgb, quality=90),
            "avif q90": g.avif(rgb, quality=90),
            "jxl d1": g.jxl(rgb, distance=1.0),
            "dng (demosaic)": g.dng(rgb),
            "dng + full-size preview": g.dng(rgb, preview=rgb),
        }
        for name, data in files.items():
            cells = []
            for side in (None, 336):
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    decode_image(data, 10**9, min_side=side)
                    times.append((time.perf_counter() - t0) * 1000)
                cells.append(f"{statistics.median(times):.1f}")
            print(f"| {w}x{h} | {name} | {len(data) / 1e3:.0f} | {cells[0]} | {cells[1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument(
        "--schemes",
        default="auto,s8-reduced,u8u8,s8",
        help=f"int8 schemes to compare, comma-separated: auto (the default of `clipsearch models quantize`) "
        f"or one of {sorted(SCHEMES)} for both towers (s8 is the legacy one)",
    )
    parser.add_argument(
        "--formats",
        action="store_true",
        help="only the decode table: ms per image for JPEG, HEIC, AVIF, JPEG XL and DNG at the same sizes",
    )
    args = parser.parse_args()
    if args.formats:
        decode_formats([(1024, 768), (2048, 1536), (4032, 3024)], max(args.repeat, 5))
        return
    model_dir = args.model_dir or (
        DEFAULT_BIG if (DEFAULT_BIG / "config.json").is_file() else tiny_model_dir()
    )
    jpegs = make_jpegs(args.images)
    mp = statistics.mean(
        np.asarray(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)).size * 64 / 1e6
        for j in jpegs
    )
    print(
        f"model {model_dir}  threads {args.threads}  cpus {os.cpu_count()}  images {len(jpegs)} "
        f"(640-2048 px JPEG, mean {mp:.1f} MP, {statistics.mean(map(len, jpegs)) / 1e3:.0f} kB)"
    )
    cpu, features = cpu_description()
    print(f"cpu {cpu} [{' '.join(features) or 'no SIMD features found'}]")
    rows = {}
    fp32 = ClipEncoder(model_dir, model_id="bench", threads=args.threads)
    ref_images, ref_texts = embed_all(fp32, jpegs)
    rows["fp32"] = bench(fp32, jpegs, args.repeat)
    schemes = [] if args.no_int8 else args.schemes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for scheme in schemes:
            # "auto" is what `clipsearch models quantize` writes: per tower, the fastest faithful scheme.
            auto = scheme == "auto"
            qdir = quantize_model_dir(
                model_dir,
                Path(tmp) / scheme,
                schemes=DEFAULT_SCHEMES if auto else (scheme,),
                min_cosine=0.999 if auto else 0.0,
            ).path
            enc = ClipEncoder(qdir, model_id="bench", precision="int8", threads=args.threads)
            images, texts = embed_all(enc, jpegs)
            ci, ct = (ref_images * images).sum(1), (ref_texts * texts).sum(1)
            row = bench(enc, jpegs, args.repeat)
            row |= {
                "img cos min": float(ci.min()),
                "img cos med": float(np.median(ci)),
                "text cos min": float(ct.min()),
                "text cos med": float(np.median(ct)),
            }
            rows[f"int8 {scheme}"] = row
    print(f"load average after the run: {os.getloadavg()[0]:.2f} (other processes skew the numbers)")
    cols = ["raw b1", "raw b8", "raw b32", "full b32", "prep ms/img", "text p50 ms", "text p99 ms"]
    cos = ["img cos min", "img cos med", "text cos min", "text cos med"]
    print()
    print(
        "| precision | "
        + " | ".join(c if "ms" in c else c + " img/s" for c in cols)
        + " | full/raw b32 | "
        + " | ".join(cos)
        + " |"
    )
    print("|---" * (len(cols) + len(cos) + 2) + "|")
    for name, r in rows.items():
        cells = [f"{r[c]:.1f}" if "ms" not in c else f"{r[c]:.2f}" for c in cols]
        cos_cells = [f"{r[c]:.5f}" if c in r else "1" for c in cos]
        print(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {r['full b32'] / r['raw b32']:.2f} | "
            + " | ".join(cos_cells)
            + " |"
        )


if __name__ == "__main__":
    main()
