"""`clipsearch models list | pull ID | quantize ID`."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from indexer.services.models import ModelsService
from indexer.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    models = subparsers.add_parser("models", help="list, download and quantise CLIP models")
    sub = models.add_subparsers(dest="models_command", required=True)

    ls = sub.add_parser("list", help="the model catalogue and what is on disk")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)

    pull = sub.add_parser("pull", help="download a model from the Hugging Face Hub into the cache")
    pull.add_argument("model_id", nargs="?", help="e.g. ViT-B-32__openai (default: MODEL_ID)")
    pull.add_argument("--endpoint", help="hub URL (default: HF_ENDPOINT or https://huggingface.co)")
    pull.add_argument("--force", action="store_true", help="download again even if cached")
    pull.set_defaults(func=cmd_pull)

    quantize = sub.add_parser(
        "quantize", help="write a dynamically quantised int8 copy (MODEL_PRECISION=int8)"
    )
    quantize.add_argument(
        "model_id", nargs="?", help="a cached model id or a model directory (default: MODEL_ID)"
    )
    quantize.add_argument("--pull", action="store_true", help="download the fp32 model first if missing")
    quantize.add_argument(
        "--scheme",
        default=None,
        help="only this scheme: s8-reduced or u8u8 (both faithful on every CPU; by default each tower gets "
        "the fastest that passes), or s8, the legacy full-range one",
    )
    quantize.add_argument(
        "--min-cosine",
        type=float,
        default=None,
        help="refuse to write below this cosine to fp32 (default: INT8_MIN_COSINE, 0.999)",
    )
    quantize.set_defaults(func=cmd_quantize)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = ModelsService(settings).listing()
    if args.json:
        out: list[dict[str, Any]] = [
            {
                "model_id": r.model_id,
                "architecture": r.architecture,
                "pretrained": r.pretrained,
                "image_size": r.image_size,
                "embed_dim": r.embed_dim,
                "approx_size_mb": r.approx_size_mb,
                "family": r.family,
                "scoring": r.scoring,
                "path": str(r.path) if r.path else None,
                "int8_path": str(r.int8_path) if r.int8_path else None,
                "default": r.default,
            }
            for r in rows
        ]
        print(json.dumps(out, indent=2))
        return 0
    width = max(len(r.model_id) for r in rows)
    print(f"{'':2}{'MODEL':{width}} {'FAMILY':12} {'INPUT':>5} {'DIM':>5} {'SIZE':>7}  {'INT8':4}  STATUS")
    for r in rows:
        mark = "* " if r.default else "  "
        status = str(r.path) if r.path else "not downloaded"
        int8 = "yes" if r.int8_path else "-"
        size = f"{r.approx_size_mb}MB"
        print(
            f"{mark}{r.model_id:{width}} {r.family:12} {r.image_size:>5} {r.embed_dim:>5} {size:>7}  "
            f"{int8:4}  {status}"
        )
    print(f"\n* = MODEL_ID ({settings.model_id}); cache: {settings.cache_dir}")
    return 0


def cmd_pull(args: argparse.Namespace, settings: Settings) -> int:
    models = ModelsService(settings)
    model_id = args.model_id or settings.model_id
    if not models.in_catalogue(model_id):
        print(f"note: {model_id} is not in the catalogue; trying {models.hub_repo(model_id)}")
    started = time.monotonic()
    path = models.pull(model_id, endpoint=args.endpoint, force=args.force)
    print(f"{model_id}: {path} ({time.monotonic() - started:.1f}s)")
    return 0


def cmd_quantize(args: argparse.Namespace, settings: Settings) -> int:
    models = ModelsService(settings)
    plan = models.plan_quantize(
        args.model_id or settings.model_id, pull=args.pull, scheme=args.scheme, min_cosine=args.min_cosine
    )
    model_id, src, dst, schemes, threshold = plan.model_id, plan.src, plan.dst, plan.schemes, plan.min_cosine
    cpu, features = plan.cpu, plan.cpu_features
    started = time.monotonic()
    print(f"quantising {model_id} ({src}) -> {dst} ({' or '.join(schemes)}) ...", flush=True)
    done = models.quantize(plan)
    fid = done.fidelity
    print(f"done in {time.monotonic() - started:.1f}s")
    print(f"image tower: {done.towers['visual']}; text tower: {done.towers['textual']}")
    if done.towers["textual"] == "fp32":
        print(f"no int8 text tower reached {threshold}: the text tower stays fp32")
    print(
        f"cosine to fp32 on the probe set: images min {fid.image_min:.5f} median {fid.image_median:.5f}; "
        f"texts min {fid.text_min:.5f} median {fid.text_median:.5f} (threshold {threshold})"
    )
    print(f"measured on {cpu} [{' '.join(features) or 'no SIMD features found'}]")
    print("use it with MODEL_PRECISION=int8")
    return 0
