#!/usr/bin/env python
"""Generate the tiny random-weight CLIP test model and its parity fixtures (optionally a random ViT-B/32).

This runs in the *reference* environment (``pip install -e '.[reference]'`` plus ``tokenizers``): torch,
open_clip, pillow, scikit-image. It is never imported by the service.

    python scripts/make_tiny_model.py                      # indexer/model/tiny/ and tests/fixtures/
    python scripts/make_tiny_model.py --vit-b32 ~/.cache/clipsearch/models/ViT-B-32-random

Both write Immich's Hugging Face layout::

    config.json                    open_clip model config (embed_dim, vision_cfg, text_cfg) + logit_scale
    visual/model.onnx              input "image" float32 [N,3,S,S], output "embedding" (L2-normalised)
    visual/preprocess_cfg.json     size, mode, mean, std, interpolation, resize_mode, fill_color
    textual/model.onnx             input "text" int32 [N,77], output "embedding" (L2-normalised)
    textual/tokenizer.json         the real CLIP BPE (49408 tokens) for the `tokenizers` library
    textual/tokenizer_config.json  model_max_length, special tokens

The fixtures under tests/fixtures/ are open_clip's own outputs on the same weights: token ids and text
embeddings for a set of prompts, and image embeddings through open_clip's PIL transform for real photos
(from scikit-image) and synthetic images in other formats.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from PIL import Image, ImageOps
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

REPO = Path(__file__).resolve().parents[1]
TINY_DIR = REPO / "indexer" / "model" / "tiny"
FIXTURES = REPO / "tests" / "fixtures"
TINY_ID = "tiny-test-clip"
SEED = 20240611

# open_clip ViT family, real image size, vocab and context; tiny widths so the files total ~4.5 MB.
# The text width is the smallest that still gives distinct embeddings, because the 49408-row token
# embedding dominates the size.
TINY_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 16, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2},
}
# With default init a 2-layer random ViT is much less sensitive to resampling error than a trained CLIP.
# Sharpening the attention (q and k scaled by 1.5) brings it to the measured sensitivity of real
# ViT-B/32: non-antialiased INTER_CUBIC gives cosine ~0.9995 here vs 0.9994 on the real model.
VISION_QK_SCALE = 1.5

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

PROMPTS: list[str] = [
    "a photo of a cat",
    "A PHOTO OF A DOG",
    "an astronaut riding a horse, on the moon!!!",
    "café crème, naïve façade, résumé",
    "東京の夜景",
    "emoji 🐱🚀 rocket",
    "  lots   of\twhitespace \n\n here  ",
    "don't we'll they're I'M",
    "1234567890 and 3.14159",
    "Tom &amp; Jerry &lt;3",
    "\u201ccurly quotes\u201d and the \ufb01nal ligature",
    "ＦＵＬＬＷＩＤＴＨ letters",
    "Ã©tÃ© mojibake",
    "a",
    "cat " * 75,  # 75 words + SOT + EOT = 77 tokens: fits exactly
    "cat " * 76,  # 78 tokens: truncated, last token forced to EOT
    (
        "A very long caption that goes on and on about a sunny afternoon in the park, where children "
        "play football, dogs chase frisbees, old friends share sandwiches on wooden benches, ducks glide "
        "across the pond, cyclists ring their bells, a street musician plays the violin, and the smell of "
        "fresh popcorn drifts from a small red cart near the fountain while clouds slowly pass overhead."
    ),
]

SKIMAGE_PHOTOS = {
    # name in skimage.data -> (file name, note)
    "astronaut.png": "astronaut.jpg",
    "coffee.png": "coffee.jpg",
    "chelsea.png": "chelsea.jpg",
    "rocket.jpg": "rocket.jpg",
    "hubble_deep_field.jpg": "hubble.jpg",
    "retina.jpg": "retina.jpg",
}


# --------------------------------------------------------------------------------------------- model
def build_model(cfg: dict[str, Any], name: str, seed: int, qk_scale: float = 1.0) -> tuple[Any, Any]:
    open_clip.factory._MODEL_CONFIGS[name] = cfg
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    model.eval()
    if qk_scale != 1.0:
        with torch.no_grad():
            for block in model.visual.transformer.resblocks:
                qk = 2 * block.attn.embed_dim
                block.attn.in_proj_weight[:qk].mul_(qk_scale)
                block.attn.in_proj_bias[:qk].mul_(qk_scale)
    for param in model.parameters():
        param.requires_grad_(False)
    return model, preprocess


class _Visual(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(image, normalize=True)


class _Textual(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(text, normalize=True)


def export_onnx(model: Any, out: Path, image_size: int, context_length: int) -> None:
    """Both towers, dynamic batch (Immich's exports fix batch 1; the encoder handles both)."""
    (out / "visual").mkdir(parents=True, exist_ok=True)
    (out / "textual").mkdir(parents=True, exist_ok=True)
    torch.backends.mha.set_fastpath_enabled(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Visual(model),
            (torch.randn(1, 3, image_size, image_size),),
            str(out / "visual" / "model.onnx"),
            input_names=["image"],
            output_names=["embedding"],
            opset_version=17,
            dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
            dynamo=False,
        )
        torch.onnx.export(
            _Textual(model),
            (torch.ones(1, context_length, dtype=torch.int32),),
            str(out / "textual" / "model.onnx"),
            input_names=["text"],
            output_names=["embedding"],
            opset_version=17,
            dynamic_axes={"text": {0: "batch"}, "embedding": {0: "batch"}},
            dynamo=False,
        )


def clip_bpe_tokenizer() -> Tokenizer:
    """The CLIP BPE from open_clip's bundled vocab, in the shape of Hugging Face's CLIP tokenizer.json."""
    byte_encoder = open_clip.tokenizer.bytes_to_unicode()
    with gzip.open(open_clip.tokenizer.default_bpe()) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab_list = list(byte_encoder.values())
    vocab_list += [v + "</w>" for v in vocab_list]
    vocab_list += ["".join(m) for m in merges]
    vocab_list += [SOT, EOT]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    assert len(vocab) == 49408
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
            unk_token=EOT,
        )
    )
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(
        (EOT, vocab[EOT]), (SOT, vocab[SOT]), trim_offsets=False, add_prefix_space=False
    )
    tok.add_special_tokens([SOT, EOT])
    return tok


def write_model_dir(model: Any, cfg: dict[str, Any], out: Path, model_id: str) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    image_size = cfg["vision_cfg"]["image_size"]
    context_length = cfg["text_cfg"]["context_length"]
    export_onnx(model, out, image_size, context_length)
    config = dict(cfg)
    config["model_id"] = model_id
    config["logit_scale"] = float(model.logit_scale.exp())
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    pre = dict(open_clip.get_model_preprocess_cfg(model))
    pre.setdefault("interpolation", "bicubic")
    pre.setdefault("resize_mode", "shortest")
    pre = {k: list(v) if isinstance(v, tuple) else v for k, v in pre.items()}
    (out / "visual" / "preprocess_cfg.json").write_text(json.dumps(pre, indent=2) + "\n")
    tok = clip_bpe_tokenizer()
    tok.save(str(out / "textual" / "tokenizer.json"))
    tok_cfg = {
        "model_max_length": context_length,
        "bos_token": SOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "pad_token": EOT,
        "do_lower_case": True,
        "tokenizer_class": "CLIPTokenizer",
    }
    (out / "textual" / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")


# ------------------------------------------------------------------------------------------ fixtures
def check_tokenizer(tok: Tokenizer) -> None:
    """The `tokenizers` BPE must give open_clip's ids on the open_clip-cleaned text."""
    ref = open_clip.tokenizer.SimpleTokenizer()
    clean = open_clip.tokenizer._clean_lower
    rng = np.random.default_rng(0)
    alphabet = [*"abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,!?'\"-()éèüßø日本語🐱\t", "'s", "'ll"]
    samples = list(PROMPTS) + [
        "".join(rng.choice(alphabet, size=int(rng.integers(1, 60)))) for _ in range(400)
    ]
    for text in samples:
        expect = ref.encode(text)
        got = tok.encode(clean(text), add_special_tokens=False).ids
        assert got == expect, (text, got, expect)
    print(f"tokenizer: {len(samples)} strings give open_clip's ids")


def _jpeg(img: Image.Image, quality: int = 90, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def make_images(out: Path) -> list[dict[str, Any]]:
    """Write the test photos and synthetic images; return the manifest (without embeddings)."""
    import skimage.data

    data_dir = Path(skimage.data.__file__).parent
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    entries: list[dict[str, Any]] = []

    def add(name: str, payload: bytes, fmt: str, note: str, ref: str = "open_clip") -> None:
        (out / name).write_bytes(payload)
        entries.append({"file": name, "format": fmt, "note": note, "reference": ref})

    for src, dst in SKIMAGE_PHOTOS.items():
        img = Image.open(data_dir / src).convert("RGB")
        if src.endswith(".jpg") and img.width * img.height < 500_000:
            payload = (data_dir / src).read_bytes()
        else:
            payload = _jpeg(img, quality=88)
        add(dst, payload, "jpeg", f"scikit-image {src}, {img.width}x{img.height}")

    coffee = Image.open(data_dir / "coffee.png").convert("RGB")  # 600x400
    chelsea = Image.open(data_dir / "chelsea.png").convert("RGB")  # 451x300
    astro = Image.open(data_dir / "astronaut.png").convert("RGB")
    base = coffee.crop((40, 20, 520, 380)).resize((320, 240), Image.Resampling.LANCZOS)
    small_cat = chelsea.resize((300, 200), Image.Resampling.LANCZOS)

    # PNG with alpha: a gradient alpha over real content (reference: PIL convert("RGB") drops alpha).
    rgba = base.copy()
    alpha = np.tile(np.linspace(0, 255, base.width, dtype=np.uint8), (base.height, 1))
    rgba.putalpha(Image.fromarray(alpha))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    add("alpha.png", buf.getvalue(), "png", "RGBA, alpha dropped as PIL convert('RGB')", "open_clip_rgb")

    # 16-bit RGB PNG (PIL reads the high byte).
    ramp = (np.arange(base.width, dtype=np.uint16) % 256)[None, :, None]
    arr16 = np.asarray(base).astype(np.uint16) * 256 + ramp
    import cv2  # type: ignore[import-not-found]  # writing 16-bit RGB PNGs; PIL cannot

    ok, enc = cv2.imencode(".png", arr16[:, :, ::-1].copy())
    assert ok
    add("rgb16.png", enc.tobytes(), "png", "16-bit RGB", "open_clip_rgb")

    # 16-bit greyscale (PIL clips I;16 to 255 on convert, so the reference is built from the high byte).
    grey = np.asarray(base.convert("L")).astype(np.uint16) * 257
    ok, enc = cv2.imencode(".png", grey)
    assert ok
    add("grey16.png", enc.tobytes(), "png", "16-bit greyscale", "high_byte")

    buf = io.BytesIO()
    base.convert("L").save(buf, "PNG")
    add("grey.png", buf.getvalue(), "png", "8-bit greyscale")

    buf = io.BytesIO()
    small_cat.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, "PNG")
    add("palette.png", buf.getvalue(), "png", "palette (P mode)", "open_clip_rgb")

    buf = io.BytesIO()
    base.save(buf, "WEBP", quality=90)
    add("photo.webp", buf.getvalue(), "webp", "lossy WebP")

    buf = io.BytesIO()
    small_cat.save(buf, "BMP")
    add("photo.bmp", buf.getvalue(), "bmp", "24-bit BMP")

    buf = io.BytesIO()
    base.save(buf, "TIFF", compression="tiff_lzw")
    add("photo.tiff", buf.getvalue(), "tiff", "RGB TIFF, LZW")

    # Animated GIF: the first frame counts.
    f1 = small_cat.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    f2 = astro.resize(small_cat.size).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    f1.save(buf, "GIF", save_all=True, append_images=[f2], duration=100, loop=0)
    add("anim.gif", buf.getvalue(), "gif", "2-frame GIF, first frame", "open_clip_rgb")

    # EXIF orientation 6 (rotate 90 CW to display): stored landscape, displayed portrait.
    exif = Image.Exif()
    exif[0x0112] = 6
    add(
        "exif_rotate90.jpg",
        _jpeg(base, exif=exif.tobytes()),
        "jpeg",
        "EXIF orientation 6",
        "exif_transpose",
    )
    add("progressive.jpg", _jpeg(chelsea, progressive=True), "jpeg", "progressive JPEG")
    add("grey.jpg", _jpeg(coffee.convert("L")), "jpeg", "greyscale JPEG")
    return entries


def reference_pil(path: Path, how: str) -> Image.Image:
    img = Image.open(path)
    if how == "exif_transpose":
        img = ImageOps.exif_transpose(img)
    if how == "high_byte":
        arr = np.asarray(img).astype(np.uint16) >> 8
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if how in ("open_clip_rgb", "high_byte", "exif_transpose"):
        # open_clip resizes *before* its RGB conversion, which means nearest-neighbour for palette
        # images and premultiplied alpha for RGBA; the service converts first (as Immich does).
        img = img.convert("RGB")
    return img


def make_fixtures(model: Any, preprocess: Any, fixtures: Path) -> None:
    fixtures.mkdir(parents=True, exist_ok=True)
    tokenizer = open_clip.tokenizer.SimpleTokenizer()
    tokens = tokenizer(PROMPTS).to(torch.int32)
    raw_lengths = [len(tokenizer.encode(t)) + 2 for t in PROMPTS]
    with torch.no_grad():
        text_emb = model.encode_text(tokens, normalize=True).numpy().astype(np.float32)
    np.save(fixtures / "text_tokens.npy", tokens.numpy())
    np.save(fixtures / "text_embeddings.npy", text_emb)
    texts = [
        {"text": t, "n_tokens": n, "truncated": n > 77} for t, n in zip(PROMPTS, raw_lengths, strict=True)
    ]

    entries = make_images(fixtures / "images")
    batch = []
    for e in entries:
        img = reference_pil(fixtures / "images" / e["file"], e["reference"])
        e["width"], e["height"] = img.size
        batch.append(preprocess(img))
    with torch.no_grad():
        img_emb = model.encode_image(torch.stack(batch), normalize=True).numpy().astype(np.float32)
    np.save(fixtures / "image_embeddings.npy", img_emb)
    photos = img_emb[: len(SKIMAGE_PHOTOS)]  # distinct photos: how far apart unrelated images land
    sims = photos @ photos.T
    off = sims[~np.eye(len(sims), dtype=bool)]
    manifest = {
        "model_id": TINY_ID,
        "generated_by": "scripts/make_tiny_model.py",
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
        "logit_scale": float(model.logit_scale.exp()),
        "texts": texts,
        "images": entries,
        "photo_pairwise_cosine": {"mean": float(off.mean()), "max": float(off.max())},
    }
    (fixtures / "reference.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"fixtures: {len(texts)} texts, {len(entries)} images -> {fixtures}")


def check_onnx(out: Path, model: Any) -> None:
    import onnxruntime as ort

    vis = ort.InferenceSession(str(out / "visual" / "model.onnx"), providers=["CPUExecutionProvider"])
    txt = ort.InferenceSession(str(out / "textual" / "model.onnx"), providers=["CPUExecutionProvider"])
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else 224
    x = torch.randn(3, 3, size, size)
    t = open_clip.tokenize(["a photo of a cat", "hello", "x " * 100]).to(torch.int32)
    with torch.no_grad():
        ri = model.encode_image(x, normalize=True).numpy()
        rt = model.encode_text(t, normalize=True).numpy()
    ci = (vis.run(None, {"image": x.numpy()})[0] * ri).sum(1).min()
    ct = (txt.run(None, {"text": t.numpy()})[0] * rt).sum(1).min()
    print(f"onnx vs torch: image cos min {ci:.7f}, text cos min {ct:.7f}")
    assert ci > 0.99999 and ct > 0.99999


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=TINY_DIR, help="tiny model directory")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny model and fixtures")
    parser.add_argument(
        "--vit-b32", type=Path, default=None, help="also write a full-size random-weight ViT-B/32 here"
    )
    args = parser.parse_args()

    if not args.no_tiny:
        tok = clip_bpe_tokenizer()
        check_tokenizer(tok)
        model, preprocess = build_model(TINY_CFG, TINY_ID, SEED, VISION_QK_SCALE)
        write_model_dir(model, TINY_CFG, args.out, TINY_ID)
        check_onnx(args.out, model)
        make_fixtures(model, preprocess, args.fixtures)
        size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
        print(f"tiny model: {args.out} ({size / 1e6:.1f} MB)")

    if args.vit_b32 is not None:
        cfg = json.loads(json.dumps(open_clip.get_model_config("ViT-B-32")))
        cfg["quick_gelu"] = True  # as ViT-B-32__openai
        model, _ = build_model(cfg, "ViT-B-32-random", SEED)
        with torch.no_grad():
            model.logit_scale.fill_(math.log(100.0))
        write_model_dir(model, cfg, args.vit_b32.expanduser(), "ViT-B-32-random")
        check_onnx(args.vit_b32.expanduser(), model)
        print(f"random ViT-B/32: {args.vit_b32}")


if __name__ == "__main__":
    main()
