"""Parity of every decode path against open_clip itself: its own transform and a random ViT-B/32 (issue 26).

    .venv/bin/python benchmarks/parity_open_clip.py  # peer: ~/.cache/clipsearch/peer-export/bin/python
    .venv/bin/python benchmarks/parity_open_clip.py --open-clip-python /path/to/venv/bin/python
    .venv/bin/python benchmarks/parity_open_clip.py --photos coffee.jpg --formats webp --sides 672,683

benchmarks/parity.py measures against open_clip's transform rebuilt in PIL and a ViT-B/32 written in numpy;
this one asks the real reference, from another Python that has torch and open_clip_torch (torch is no
dependency of the project; scripts/build_peer_rclip.sh builds such a venv outside the repository).

For each shipped photo (tests/fixtures/images), format and shorter side from 1x to 8x the model input
(tests/parity_cases.py: every format the service reads, stepping across each side where a reduction
starts), the project's venv encodes the file and computes OUR model input through the service's decode
(``decode_image(min_side=...)``: libjpeg's DCT scaling, area reduction, a RAW's preview) and preprocessing,
with the preprocess config that open_clip reports for its ViT-B-32. The peer
(benchmarks/open_clip_peer.py, run by ``--open-clip-python`` through a pipe, with the data in .npy files in a
temporary folder) applies the ``preprocess`` of ``open_clip.create_model_and_transforms("ViT-B-32",
pretrained=None)`` to the PIL image of the file: the file itself, opened by the peer's PIL, for JPEG, PNG,
WebP, TIFF and AVIF; for the formats that PIL does not read there (HEIC, JPEG XL) the full-resolution RGB
pixels decoded in the project's venv (pillow-heif, imagecodecs), handed over as .npy, since open_clip's
transform starts from a PIL image anyway; for a RAW, its full-resolution rendering (the image its preview
was made from where the service took the preview, else LibRaw's demosaic). It then runs open_clip's
random-weight ViT-B/32 (``torch.manual_seed(0)``) on both inputs.

Printed per format and size, lowest over the photos: the image cosine of our input against open_clip's,
of the same decode preprocessed as before issue 26 (planned from the reduced pixels' own size), and of
the PIL-rebuilt reference that tests/parity_cases.py uses; and the largest input differences against
open_clip's input, in 8-bit levels (normalised difference x std x 255): ours (max over pixels, and the
mean over pixels, worst photo) and the rebuilt reference's. The bar: cosine >= 0.9999.

Measured (2026-12-05, 2 busy cores, open_clip 3.3.0, torch 2.15.0 CPU, torchvision 0.29.2, Pillow 13.0.0;
the defaults: 6 photos x 19 sides of 224-1792 px, all 8 formats), lowest cosine over photos and sizes:

| format | reference image | now | before 26 | PIL-rebuilt | max Δ now | mean Δ now | max Δ rebuilt |
|---|---|---|---|---|---|---|---|
| jpeg (DCT scaling) | the file | 0.999975 | 0.998674 | 1.000000 | 21 | 0.977 | 0 |
| png | the file | 0.999980 | 0.997153 | 1.000000 | 78 | 0.913 | 0 |
| webp | the file | 0.999978 | 0.997192 | 1.000000 | 77 | 0.902 | 0 |
| tiff | the file | 0.999980 | 0.997153 | 1.000000 | 78 | 0.913 | 0 |
| heic | pixels (pillow-heif) | 0.999979 | 0.997193 | 1.000000 | 79 | 0.917 | 0 |
| avif | the file | 0.999979 | 0.997211 | 1.000000 | 78 | 0.906 | 0 |
| jxl | pixels (imagecodecs) | 0.999980 | 0.997200 | 1.000000 | 80 | 0.923 | 0 |
| dng-preview (0.4x Lanczos preview) | pixels (rendering) | 0.999947 | 0.998083 | 1.000000 | 45 | 1.753 | 0 |

Bar met everywhere (540 s). Every full-resolution decode (short side < 672, or a RAW below 840 px, whose
preview is too small) is 1.000000 with inputs within 1 level (float32 sums against Pillow's fixed point);
the lowest cosines are at the reductions' thresholds (672, 683, 1344, 1355) and on RAW previews (the
camera's filter against bicubic). Findings:

- The PIL-rebuilt reference of tests/parity_cases.py (``tests.unit.test_preprocess.pil_transform``) is
  open_clip's transform to the bit (max Δ 0 at every size and format): the unit tests and parity.py
  measure against the right reference.
- On parity.py's ViT-B/32 scope (coffee.jpg and hubble.jpg at 671-1792 px), open_clip's random ViT-B/32
  gives before -> now: JPEG 0.999936 -> 0.999993, WebP 0.999522 -> 0.999994, RAW preview 0.998701 ->
  0.999980; parity.py's numpy one gave 0.999942 -> 0.999994, 0.999508 -> 0.999995, 0.998783 -> 0.999980:
  that stand-in was faithful. The table's lower minima come from the wider scope (6 photos, 19 sides),
  where before issue 26 falls to 0.99715: the bar has teeth on this model too.
- The largest input differences (77-80 levels, PNG/WebP/TIFF/HEIC/AVIF/JXL at 1355 px, k=4) lie on the
  crop's last row or column only: the area reduction drops the last h % k rows and w % k columns (its fast
  path, ``area_by_whole_factor``), so the edge outputs miss up to k-1 pixels of their filter's support;
  inside, the largest is 11-17 levels, as JPEG's (libjpeg's DCT scaling keeps a partial last pixel; JPEG's
  largest is 19-21). Reducing with an edge-replicated partial last pixel instead (tried on PNG, 6
  photos at 683, 1343, 1355 and 1456 px, this ViT-B/32) brings the largest to 4-20 levels (78 -> 19 for
  coffee.jpg at 1355) but moves no cosine by more than 2e-6 (lowest 0.999980 -> 0.999981): the bar is
  met either way, the fast path is kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexer.model.preprocess import PreprocessConfig  # noqa: E402
from tests import parity_cases as pc  # noqa: E402

PEER_SCRIPT = Path(__file__).resolve().with_name("open_clip_peer.py")
PEER_PYTHON = Path.home() / ".cache/clipsearch/peer-export/bin/python"
PHOTOS = ("astronaut.jpg", "coffee.jpg", "chelsea.jpg", "rocket.jpg", "hubble.jpg", "retina.jpg")
BAR = 0.9999
# the PIL format that opens each of our formats' files (a RAW has none: its reference is a rendering)
PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF", "heic": "HEIF", "avif": "AVIF"}
PIXELS_FROM = {"heic": "pillow-heif", "jxl": "imagecodecs", "dng-preview": "full rendering"}


class Peer:
    """benchmarks/open_clip_peer.py in the other Python: one batch folder a line in, one JSON line out."""

    def __init__(self, python: Path, seed: int, threads: int) -> None:
        if not python.is_file():
            raise SystemExit(
                f"no Python at {python}: give --open-clip-python, a venv outside the repository with torch "
                "and open_clip_torch (scripts/build_peer_rclip.sh builds one)"
            )
        cmd = [str(python), str(PEER_SCRIPT), "--seed", str(seed), "--threads", str(threads)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello: dict[str, Any] = self._read()

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        return self._proc.stdin, self._proc.stdout

    def _read(self) -> Any:
        line = self._pipes()[1].readline()
        if not line:
            raise RuntimeError(f"the open_clip peer exited ({self._proc.wait()}); see its stderr above")
        return json.loads(line)

    def submit(self, folder: Path) -> None:
        stdin = self._pipes()[0]
        stdin.write(f"{folder}\n")
        stdin.flush()

    def results(self) -> list[dict[str, float]]:
        rows: list[dict[str, float]] = self._read()
        return rows

    def close(self) -> None:
        stdin = self._pipes()[0]
        stdin.write("\n")
        stdin.close()
        self._proc.wait()


@dataclass
class Batch:
    """The photos of one format at one size, as handed to the peer."""

    fmt: str
    side: int
    folder: Path
    kinds: str  # what the service's decode did: 1, 2, 4, 8 (``p``: a RAW's preview)
    rows: list[dict[str, float]] = field(default_factory=list)


def write_batch(
    root: Path, fmt: str, side: int, photos: list[str], cfg: PreprocessConfig, peer_formats: set[str]
) -> Batch:
    folder = root / f"{fmt}-{side}"
    folder.mkdir()
    cases = [pc.case(name, fmt, side, cfg, cfg.min_decode_side) for name in photos]
    manifest = []
    for i, c in enumerate(cases):
        entry: dict[str, str] = {}
        for name, arr in (("ours", c.ours), ("before", c.before), ("rebuilt", c.reference)):
            entry[name] = f"{i}-{name}.npy"
            np.save(folder / entry[name], arr)
        if PIL_FORMAT.get(fmt) in peer_formats:
            entry["file"] = f"{i}.{fmt}"
            (folder / entry["file"]).write_bytes(c.data)
        else:
            entry["pixels"] = f"{i}-full.npy"
            np.save(folder / entry["pixels"], c.full)
        manifest.append(entry)
    (folder / "manifest.json").write_text(json.dumps({"cases": manifest}))
    kinds = "/".join(sorted({f"{c.reduction}{'p' if c.preview else ''}" for c in cases}))
    return Batch(fmt, side, folder, kinds)


COLUMNS = ("cos_ours", "cos_before", "cos_rebuilt", "diff_ours", "mean_ours", "diff_rebuilt")


def _worst(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: (min if k.startswith("cos") else max)(r[k] for r in rows) for k in COLUMNS}


def _cells(w: dict[str, float]) -> str:
    return " | ".join(
        f"{w[k]:.6f}" if k.startswith("cos") else f"{w[k]:.3f}" if k.startswith("mean") else f"{w[k]:.0f}"
        for k in COLUMNS
    )


def run(peer: Peer, photos: list[str], formats: list[str], sides: list[int]) -> None:
    cfg = PreprocessConfig.from_dict(peer.hello["preprocess_cfg"])
    peer_formats = set(peer.hello["formats"])
    print(
        f"open_clip {peer.hello['open_clip']}, torch {peer.hello['torch']}, "
        f"torchvision {peer.hello['torchvision']}, Pillow {peer.hello['pillow']} (peer); "
        f"seed {peer.hello['seed']}"
    )
    print(f"open_clip's ViT-B-32 preprocess: {peer.hello['transform']}")
    print(f"as our config: {cfg}; min_decode_side {cfg.min_decode_side}")
    print(f"photos: {', '.join(photos)}; sides: {', '.join(map(str, sides))}")
    header = "| short side | k | now | before | PIL-rebuilt | max Δ now | mean Δ now | max Δ rebuilt |"
    done: list[Batch] = []
    started = time.perf_counter()

    def collect(batch: Batch) -> None:
        batch.rows = peer.results()
        if not done or done[-1].fmt != batch.fmt:
            source = (
                "the file, opened by the peer's PIL"
                if PIL_FORMAT.get(batch.fmt) in peer_formats
                else f"full-resolution pixels from the project's venv ({PIXELS_FROM.get(batch.fmt, 'PIL')})"
            )
            print(f"\n### {batch.fmt} (reference image: {source})\n\n{header}\n" + "|---" * 8 + "|")
        done.append(batch)
        print(f"| {batch.side} | {batch.kinds} | {_cells(_worst(batch.rows))} |", flush=True)
        for f in batch.folder.iterdir():
            f.unlink()
        batch.folder.rmdir()

    with tempfile.TemporaryDirectory(prefix="parity-open-clip-") as tmp:
        pending: Batch | None = None
        for fmt in formats:
            for side in sides:
                batch = write_batch(Path(tmp), fmt, side, photos, cfg, peer_formats)
                peer.submit(batch.folder)  # the peer runs it while the next one is encoded
                if pending is not None:
                    collect(pending)
                pending = batch
        if pending is not None:
            collect(pending)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    print("\n### lowest cosine and largest input difference (8-bit levels) over all photos and sizes\n")
    print("| format | now | before | PIL-rebuilt | max Δ now | mean Δ now | max Δ rebuilt |")
    print("|---|---|---|---|---|---|---|")
    missed = []
    for fmt in formats:
        worst = _worst([r for b in done if b.fmt == fmt for r in b.rows])
        print(f"| {fmt} | {_cells(worst)} |")
        if worst["cos_ours"] < BAR:
            missed.append(fmt)
    print(f"\nbar {BAR}: {'met everywhere' if not missed else f'MISSED by {missed}'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--open-clip-python",
        type=Path,
        default=PEER_PYTHON,
        help="a Python with torch and open_clip_torch (never the project's venv)",
    )
    parser.add_argument("--photos", default=",".join(PHOTOS))
    parser.add_argument("--formats", default=",".join(pc.FORMATS))
    parser.add_argument("--upto", type=int, default=8, help="largest short side, in model inputs")
    parser.add_argument("--sides", default="", help="short sides (default: tests/parity_cases.py's sizes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the peer")
    args = parser.parse_args()
    peer = Peer(args.open_clip_python, args.seed, args.threads)
    try:
        cfg = PreprocessConfig.from_dict(peer.hello["preprocess_cfg"])
        sides = (
            [int(s) for s in args.sides.split(",")]
            if args.sides
            else pc.sizes(cfg, cfg.min_decode_side, args.upto)
        )
        run(peer, args.photos.split(","), args.formats.split(","), sides)
    finally:
        peer.close()


if __name__ == "__main__":
    main()
