"""The reference side of benchmarks/parity_open_clip.py: open_clip itself, in a Python that has torch.

    <peer python> benchmarks/open_clip_peer.py [--seed 0] [--threads 1]

Run by parity_open_clip.py as a subprocess of another virtual environment (torch and open_clip_torch are
no dependency of the project); it imports nothing from the project, only numpy, PIL, torch and open_clip.

It builds ``open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)`` after
``torch.manual_seed(seed)`` (a random-weight ViT-B/32 and open_clip's own eval transform: torchvision's
Resize(224, bicubic, antialias) and CenterCrop on a PIL image, ToTensor, Normalize) and writes one JSON line,
the hello: versions, the model's preprocess config and the image formats this PIL opens. Then, for each
line read from stdin (a batch folder holding ``manifest.json``), it answers one JSON line: per case, the
image cosines and the largest and mean input differences (in 8-bit levels) of the service's input
(``ours``), the same decode preprocessed as before issue 26 (``before``) and the PIL-rebuilt reference
(``rebuilt``), each against open_clip's transform of the reference image (``real``). The reference
image is the file itself, opened by this PIL, where it reads the format, else the full-resolution RGB
pixels the project decoded (``pixels``, a .npy: HEIC, JPEG XL, a RAW's rendering); open_clip's transform
starts from a PIL image either way. An empty line ends it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import PIL
import torch
import torchvision
from PIL import Image

INPUTS = ("ours", "before", "rebuilt")


def _reference_image(folder: Path, case: dict[str, Any]) -> Image.Image:
    if case.get("file"):
        img = Image.open(folder / case["file"])
        img.load()
        return img
    return Image.fromarray(np.load(folder / case["pixels"]))


def _encode(model: torch.nn.Module, inputs: list[torch.Tensor], chunk: int = 16) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(inputs), chunk):
            out.append(model.encode_image(torch.stack(inputs[i : i + chunk])))
    return torch.nn.functional.normalize(torch.cat(out).double(), dim=-1)


def _batch(model: torch.nn.Module, preprocess: Any, levels: torch.Tensor, folder: Path) -> list[dict]:
    cases = json.loads((folder / "manifest.json").read_text())["cases"]
    unique: dict[bytes, int] = {}  # identical inputs (a full-resolution decode's) run once
    inputs: list[torch.Tensor] = []
    index: list[dict[str, int]] = []
    tensors: list[dict[str, torch.Tensor]] = []

    def add(x: torch.Tensor) -> int:
        key = hashlib.sha1(x.numpy().tobytes()).digest()
        if key not in unique:
            unique[key] = len(inputs)
            inputs.append(x)
        return unique[key]

    for case in cases:
        named = {name: torch.from_numpy(np.load(folder / case[name])) for name in INPUTS}
        named["real"] = preprocess(_reference_image(folder, case)).float()
        tensors.append(named)
        index.append({name: add(x) for name, x in named.items()})
    vectors = _encode(model, inputs)
    results = []
    for named, at in zip(tensors, index, strict=True):
        real = vectors[at["real"]]
        row: dict[str, float] = {}
        for name in INPUTS:
            row[f"cos_{name}"] = float(vectors[at[name]] @ real)
            diff = (named[name] - named["real"]).abs() * levels
            row[f"diff_{name}"], row[f"mean_{name}"] = float(diff.max()), float(diff.mean())
        results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    # the answers go to the real stdout; anything a library prints goes to stderr
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    cfg = dict(open_clip.get_model_preprocess_cfg(model))
    levels = 255.0 * torch.tensor(cfg["std"], dtype=torch.float32).reshape(3, 1, 1)
    hello = {
        "open_clip": open_clip.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "seed": args.seed,
        "preprocess_cfg": cfg,
        "transform": " -> ".join(repr(t) for t in preprocess.transforms),
        "formats": sorted(set(Image.registered_extensions().values())),
    }
    print(json.dumps(hello), file=answers, flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        print(json.dumps(_batch(model, preprocess, levels, Path(line.strip()))), file=answers, flush=True)


if __name__ == "__main__":
    main()
