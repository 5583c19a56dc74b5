#!/usr/bin/env python
"""Generate the tiny random-weight CLIP test model and its parity fixtures (optionally a random ViT-B/32).

This runs in the *reference* environment (``pip install -e '.[reference]'`` plus ``tokenizers``): torch,
open_clip, pillow, scikit-image. It is never imported by the service.

    python scripts/make_tiny_model.py                      # indexer/model/tiny/ and tests/fixtures/
    python scripts/make_tiny_model.py --vit-b32 ~/.cache/clipsearch/models/ViT-B-32-random
    python scripts/make_tiny_model.py --no-tiny --vit-b32-256 ~/.cache/clipsearch/models/ViT-B-32-256-random
    python scripts/make_tiny_model.py --no-tiny --family all   # indexer/model/tiny-{rn,siglip,xlmr}/ and
                                                               # tests/fixtures/families/ (needs transformers,
                                                               # sentencepiece, timm, onnxruntime too)

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
import contextlib
import gzip
import io
import json
import math
import shutil
import tempfile
import warnings
from collections.abc import Iterator
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


def export_onnx(
    model: Any,
    out: Path,
    image_size: int,
    context_length: int,
    text_example: torch.Tensor | None = None,
    dynamic_batch: bool = True,
) -> None:
    """Both towers, dynamic batch unless told (Immich's exports fix batch 1; the encoder handles both)."""
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
            dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}} if dynamic_batch else None,
            dynamo=False,
        )
        torch.onnx.export(
            _Textual(model),
            (torch.ones(1, context_length, dtype=torch.int32) if text_example is None else text_example,),
            str(out / "textual" / "model.onnx"),
            input_names=["text"],
            output_names=["embedding"],
            opset_version=17,
            dynamic_axes={"text": {0: "batch"}, "embedding": {0: "batch"}} if dynamic_batch else None,
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


# ------------------------------------------------------------------------------------------ families
# Three more open_clip families, each tiny and random, with the tokenizer type its real exports ship:
#   rn      ModifiedResNet (RN50-style: attention pool) + the CLIP text tower and BPE
#   siglip  timm SigLIP ViT (MAP pool, squash resize, mean/std 0.5), non-causal text tower pooled at the
#           last position, sentencepiece unigram tokenizer of the T5 kind, canonicalize cleaning, logit bias
#   xlmr    ViT + XLM-RoBERTa text tower (Hugging Face, mean pooled, MLP projection), sentencepiece unigram
#           tokenizer of the XLM-R kind (xlm-roberta-base-ViT-B-32-style)
# No hub is reachable, so the Hugging Face configs are written here and the tokenizers are trained with
# sentencepiece on MULTILINGUAL_CORPUS, then converted by transformers into the tokenizer.json that real
# exports carry. What parity proves is our code path on the real tokenizer *types*, not the real vocabularies.
FAMILY_DIRS = {"rn": "tiny-rn", "siglip": "tiny-siglip", "xlmr": "tiny-xlmr"}
FAMILY_IDS = {"rn": "tiny-test-rn", "siglip": "tiny-test-siglip", "xlmr": "tiny-test-xlmr"}
FAMILY_SEEDS = {"rn": SEED + 1, "siglip": SEED + 2, "xlmr": SEED + 3}

TINY_RN_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 2},
}
# timm's vit_base_patch16_siglip_224, shrunk (TimmModel cannot pass these through, see _timm_overrides).
SIGLIP_TIMM = "vit_base_patch16_siglip_224"
SIGLIP_TIMM_KWARGS: dict[str, Any] = {"embed_dim": 64, "depth": 2, "num_heads": 4}
SIGLIP_VOCAB = 1200
XLMR_VOCAB = 1600

MULTILINGUAL_CORPUS = """\
a photo of a cat sleeping on the sofa
a dog running on the beach at sunset
a red car parked in front of an old house
children playing football in the park
a cup of coffee on a wooden table
the night sky full of stars above the mountains
an astronaut riding a horse on the moon
a bowl of fresh fruit in the kitchen
two friends laughing in a cafe
a rocket launching into the blue sky
snow on the roofs of a small village
a bicycle leaning against a yellow wall
ein Foto einer Katze, die auf dem Sofa schläft
ein Hund, der bei Sonnenuntergang am Strand läuft
ein rotes Auto vor einem alten Haus
Kinder spielen Fußball im Park
eine Tasse Kaffee auf einem Holztisch
une photo d'un chat qui dort sur le canapé
un chien qui court sur la plage au coucher du soleil
une voiture rouge garée devant une vieille maison
des enfants jouent au football dans le parc
une tasse de café sur une table en bois
una foto de un gato durmiendo en el sofá
un perro corriendo por la playa al atardecer
un coche rojo aparcado frente a una casa vieja
niños jugando al fútbol en el parque
una taza de café sobre una mesa de madera
фотография кошки, спящей на диване
собака бежит по пляжу на закате
красная машина перед старым домом
дети играют в футбол в парке
чашка кофе на деревянном столе
ночное небо, полное звёзд, над горами
ソファで寝ている猫の写真
夕日の浜辺を走る犬
古い家の前に停まっている赤い車
公園でサッカーをする子供たち
木のテーブルの上のコーヒー
東京の夜景と山の上の星空
沙发上睡觉的猫的照片
日落时在海滩上奔跑的狗
停在老房子前面的红色汽车
孩子们在公园里踢足球
木桌上的一杯咖啡
صورة قطة نائمة على الأريكة
كلب يركض على الشاطئ عند غروب الشمس
سيارة حمراء أمام منزل قديم
أطفال يلعبون كرة القدم في الحديقة
फोटो में सोफे पर सोती हुई बिल्ली
सूर्यास्त के समय समुद्र तट पर दौड़ता कुत्ता
पार्क में फुटबॉल खेलते बच्चे
소파에서 자고 있는 고양이 사진
해질녘 해변을 달리는 개
공원에서 축구를 하는 아이들
μια φωτογραφία μιας γάτας που κοιμάται στον καναπέ
ένας σκύλος που τρέχει στην παραλία
παιδιά παίζουν ποδόσφαιρο στο πάρκο
"""

MULTILINGUAL_PROMPTS: list[str] = [
    "a photo of a cat",
    "Ein Foto einer Katze",
    "une photo d'un chat",
    "фотография кошки",
    "Фотография КОШКИ на диване!",
    "猫の写真",
    "沙发上的猫",
    "صورة قطة",
    "बिल्ली की तस्वीर",
    "고양이 사진",
    "μια φωτογραφία μιας γάτας",
    "emoji 🐱🚀 rocket",
    "ＦＵＬＬＷＩＤＴＨ letters and ｶﾀｶﾅ",
    "  lots   of\twhitespace \n\n here  ",
    "Tom &amp; Jerry &lt;3",
    "unseen words: xylophone quokka zebra",
    "ночь " * 60,  # truncated: the last position keeps </s>
]
SIGLIP_PROMPTS: list[str] = [
    "a photo of a cat",
    "A PHOTO OF A DOG!!!",
    "it's_a snake_case_caption, with (punctuation) & more...",
    "café crème, naïve façade",
    "Tom &amp; Jerry &lt;3",
    "\u201ccurly quotes\u201d and the \ufb01nal ligature",
    "  lots   of\twhitespace \n\n here  ",
    "1234567890 and 3.14159",
    "東京の夜景",
    "a",
    "dog " * 70,  # 64 tokens at most: truncated, EOS kept last
]


def _family_prompts(family: str) -> list[str]:
    return {"rn": PROMPTS, "siglip": SIGLIP_PROMPTS, "xlmr": MULTILINGUAL_PROMPTS}[family]


def train_sentencepiece(kind: str, vocab_size: int, out: Path) -> Path:
    """A sentencepiece unigram model on MULTILINGUAL_CORPUS, converted by transformers into the Hugging Face
    layout of the real tokenizer (``xlmr``: XLMRobertaTokenizer; ``t5``: SigLIP's T5 tokenizer, pad = EOS)."""
    import sentencepiece as spm
    import transformers

    lines = [line for line in MULTILINGUAL_CORPUS.splitlines() if line.strip()]
    buf = io.BytesIO()
    # XLM-R's fairseq model: unk 0, <s> 1, </s> 2 (the converter re-orders them);
    # T5's: <pad> 0, </s> 1, <unk> 2
    ids = (
        {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
        if kind == "xlmr"
        else {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1}
    )
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        normalization_rule_name="nmt_nfkc",
        num_threads=1,
        minloglevel=2,
        **ids,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "xlmr":
            (Path(tmp) / "sentencepiece.bpe.model").write_bytes(buf.getvalue())
            tok = transformers.XLMRobertaTokenizer.from_pretrained(tmp)
        else:
            (Path(tmp) / "spiece.model").write_bytes(buf.getvalue())
            tok = transformers.T5Tokenizer.from_pretrained(tmp, extra_ids=0)
            tok.pad_token = "</s>"  # big_vision pads SigLIP text with EOS (pad_value=1), as open_clip does
        if out.exists():
            shutil.rmtree(out)
        tok.save_pretrained(str(out))
    return out


@contextlib.contextmanager
def _timm_overrides(name: str, kwargs: dict[str, Any]) -> Iterator[None]:
    """open_clip's TimmModel builds the named timm model at full size; make that one model tiny."""
    import timm

    original = timm.create_model

    def create(model_name: str, *args: Any, **kw: Any) -> Any:
        if model_name == name:
            kw = {**kw, **kwargs}
        return original(model_name, *args, **kw)

    timm.create_model = create
    try:
        yield
    finally:
        timm.create_model = original


def build_family(family: str, work: Path) -> tuple[Any, Any, Any, dict[str, Any], Path | None]:
    """(model, preprocess, open_clip tokenizer, config.json content, HF tokenizer dir or None)."""
    name = FAMILY_IDS[family]
    kwargs: dict[str, Any] = {}
    tok_dir: Path | None = None
    if family == "rn":
        cfg = json.loads(json.dumps(TINY_RN_CFG))
        written = json.loads(json.dumps(cfg))
    elif family == "siglip":
        tok_dir = train_sentencepiece("t5", SIGLIP_VOCAB, work / "siglip-tokenizer")
        vocab = len(transformers_tokenizer(tok_dir))
        width = SIGLIP_TIMM_KWARGS["embed_dim"]
        cfg = {
            "embed_dim": width,
            "init_logit_bias": -10,
            "custom_text": True,
            "vision_cfg": {
                "image_size": 224,
                "timm_model_name": SIGLIP_TIMM,
                "timm_model_pretrained": False,
                "timm_pool": "map",
                "timm_proj": "none",
            },
            "text_cfg": {
                "context_length": 64,
                "vocab_size": vocab,
                "hf_tokenizer_name": str(tok_dir),
                "tokenizer_kwargs": {"clean": "canonicalize"},
                "width": width,
                "heads": 4,
                "layers": 2,
                "no_causal_mask": True,
                "proj_bias": True,
                "pool_type": "last",
                "norm_kwargs": {"eps": 1e-6},
            },
        }
        written = json.loads(json.dumps(cfg))
        written["vision_cfg"]["timm_model_kwargs"] = SIGLIP_TIMM_KWARGS  # documents the shrink
        written["text_cfg"]["hf_tokenizer_name"] = (
            f"{name} (textual/tokenizer.json, T5 sentencepiece unigram)"
        )
        kwargs = {
            "image_mean": (0.5, 0.5, 0.5),
            "image_std": (0.5, 0.5, 0.5),
            "image_interpolation": "bicubic",
            "image_resize_mode": "squash",
        }
    else:
        import transformers

        tok_dir = train_sentencepiece("xlmr", XLMR_VOCAB, work / "xlmr-tokenizer")
        hf_tok = transformers_tokenizer(tok_dir)
        hf_cfg = transformers.XLMRobertaConfig(
            vocab_size=len(hf_tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=514,
            type_vocab_size=1,
            pad_token_id=hf_tok.pad_token_id,
            bos_token_id=hf_tok.bos_token_id,
            eos_token_id=hf_tok.eos_token_id,
        )
        hf_cfg._attn_implementation = "eager"
        hf_dir = work / "xlmr-config"
        hf_cfg.save_pretrained(str(hf_dir))
        cfg = {
            "embed_dim": 32,
            "vision_cfg": dict(TINY_CFG["vision_cfg"]),
            "text_cfg": {
                "hf_model_name": str(hf_dir),
                "hf_tokenizer_name": str(tok_dir),
                "hf_pooler_type": "mean_pooler",
            },
        }
        written = json.loads(json.dumps(cfg))
        written["text_cfg"]["hf_model_name"] = f"{name} (XLMRobertaConfig: {hf_cfg.to_diff_dict()})"
        written["text_cfg"]["hf_tokenizer_name"] = (
            f"{name} (textual/tokenizer.json, XLM-R sentencepiece unigram)"
        )
        written["text_cfg"]["context_length"] = 77
        kwargs = {"pretrained_text": False}
    open_clip.factory._MODEL_CONFIGS[name] = cfg
    torch.manual_seed(FAMILY_SEEDS[family])
    with warnings.catch_warnings(), _timm_overrides(SIGLIP_TIMM, SIGLIP_TIMM_KWARGS):
        warnings.simplefilter("ignore")
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, **kwargs)
        tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    if family == "rn":
        calibrate_batchnorm(model, preprocess)
    if family == "xlmr":
        model.text.transformer.config._attn_implementation = "eager"
    for param in model.parameters():
        param.requires_grad_(False)
    return model, preprocess, tokenizer, written, tok_dir


def calibrate_batchnorm(model: Any, preprocess: Any) -> None:
    """A random ModifiedResNet with fresh BatchNorm statistics (mean 0, variance 1) collapses: every photo
    lands at cosine > 0.9999 of every other, so no preprocessing error could show. Setting the statistics
    from the six fixture photos (one pass in training mode, cumulative average) keeps the weights random but
    the activations normalised, as in a trained network: distinct photos then sit at cosine 0.65 on average
    (0.80 at most), and a nearest-neighbour resize instead of the antialiased one drops to 0.994."""
    photos = [Image.open(FIXTURES / "images" / name).convert("RGB") for name in SKIMAGE_PHOTOS.values()]
    batch = torch.stack([preprocess(img) for img in photos])
    for module in model.visual.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.visual.train()
    with torch.no_grad():
        model.visual(batch)
    model.visual.eval()


def transformers_tokenizer(tok_dir: Path) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(tok_dir))


def write_family_dir(
    family: str, model: Any, tokenizer: Any, written: dict[str, Any], tok_dir: Path | None, out: Path
) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    size = model.visual.image_size
    image_size = size[0] if isinstance(size, tuple | list) else int(size)
    context_length = int(written["text_cfg"].get("context_length", 77))
    # trace with real ids (special tokens, padding) so no value-dependent branch is baked on all-ones input
    example = tokenizer(["a photo of a cat"]).to(torch.int32)
    export_onnx(model, out, image_size, context_length, example)
    # torch.onnx.export restores the wrappers' (training) mode afterwards, which reaches the model: put it
    # back in eval mode, or BatchNorm (ResNet) and dropout (XLM-R) change every reference output after this.
    model.eval()
    config = dict(written)
    config["model_id"] = FAMILY_IDS[family]
    config["logit_scale"] = float(model.logit_scale.exp())
    if getattr(model, "logit_bias", None) is not None:
        config["logit_bias"] = float(model.logit_bias)
    (out / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    pre = dict(open_clip.get_model_preprocess_cfg(model))
    pre.setdefault("interpolation", "bicubic")
    pre.setdefault("resize_mode", "shortest")
    pre = {k: list(v) if isinstance(v, tuple) else v for k, v in pre.items()}
    (out / "visual" / "preprocess_cfg.json").write_text(json.dumps(pre, indent=2) + "\n")
    if tok_dir is None:  # the CLIP BPE, as for the tiny ViT
        clip_bpe_tokenizer().save(str(out / "textual" / "tokenizer.json"))
        tok_cfg: dict[str, Any] = {
            "model_max_length": context_length,
            "bos_token": SOT,
            "eos_token": EOT,
            "unk_token": EOT,
            "pad_token": EOT,
            "do_lower_case": True,
            "tokenizer_class": "CLIPTokenizer",
        }
    else:  # the Hugging Face files as saved by transformers, with the model's context length
        shutil.copy(tok_dir / "tokenizer.json", out / "textual" / "tokenizer.json")
        tok_cfg = json.loads((tok_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        for key in ("is_local", "local_files_only", "name_or_path"):
            tok_cfg.pop(key, None)
        tok_cfg["model_max_length"] = context_length
    (out / "textual" / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")


def make_family_fixtures(family: str, model: Any, preprocess: Any, tokenizer: Any, fixtures: Path) -> None:
    """Token ids and text embeddings of the family's prompts, and image embeddings of the committed fixture
    images (tests/fixtures/images, not rewritten) through open_clip's own tokenizer and transform."""
    if fixtures.exists():
        shutil.rmtree(fixtures)
    fixtures.mkdir(parents=True)
    prompts = _family_prompts(family)
    tokens = tokenizer(prompts).to(torch.int32)
    with torch.no_grad():
        text_emb = model.encode_text(tokens, normalize=True).numpy().astype(np.float32)
    np.save(fixtures / "text_tokens.npy", tokens.numpy())
    np.save(fixtures / "text_embeddings.npy", text_emb)
    base = json.loads((FIXTURES / "reference.json").read_text(encoding="utf-8"))
    entries = [{k: e[k] for k in ("file", "format", "reference")} for e in base["images"]]
    batch = [preprocess(reference_pil(FIXTURES / "images" / e["file"], e["reference"])) for e in entries]
    with torch.no_grad():
        img_emb = model.encode_image(torch.stack(batch), normalize=True).numpy().astype(np.float32)
    np.save(fixtures / "image_embeddings.npy", img_emb)
    photos = img_emb[: len(SKIMAGE_PHOTOS)]
    sims = photos @ photos.T
    off = sims[~np.eye(len(sims), dtype=bool)]
    manifest = {
        "model_id": FAMILY_IDS[family],
        "family": family,
        "generated_by": f"scripts/make_tiny_model.py --no-tiny --family {family}",
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
        "logit_scale": float(model.logit_scale.exp()),
        "logit_bias": float(model.logit_bias) if getattr(model, "logit_bias", None) is not None else None,
        "texts": [{"text": t} for t in prompts],
        "images": entries,
        "photo_pairwise_cosine": {"mean": float(off.mean()), "max": float(off.max())},
    }
    (fixtures / "reference.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"{family} fixtures: {len(prompts)} texts, {len(entries)} images -> {fixtures}")


def check_family_onnx(out: Path, model: Any, tokenizer: Any, family: str) -> None:
    import onnxruntime as ort

    vis = ort.InferenceSession(str(out / "visual" / "model.onnx"), providers=["CPUExecutionProvider"])
    txt = ort.InferenceSession(str(out / "textual" / "model.onnx"), providers=["CPUExecutionProvider"])
    size = model.visual.image_size
    side = size[0] if isinstance(size, tuple | list) else int(size)
    x = torch.randn(3, 3, side, side)
    t = tokenizer(_family_prompts(family)[:5]).to(torch.int32)
    with torch.no_grad():
        ri = model.encode_image(x, normalize=True).numpy()
        rt = model.encode_text(t, normalize=True).numpy()
    vi = vis.run(None, {"image": x.numpy()})[0]
    vt = txt.run(None, {"text": t.numpy()})[0]
    ci = (vi * ri).sum(1).min()
    ct = (vt * rt).sum(1).min()
    print(f"{family} onnx vs torch: image cos min {ci:.7f}, text cos min {ct:.7f}")
    assert ci > 0.99999 and ct > 0.99999


def check_family_tokenizer(out: Path, tokenizer: Any, written: dict[str, Any]) -> None:
    """The service's tokenizer (indexer.model.tokenizer, which needs only `tokenizers`, ftfy and numpy) must
    give open_clip's ids on 500 random strings of mixed scripts, punctuation and lengths (truncation
    included)."""
    import sys

    sys.path.insert(0, str(REPO))
    from indexer.model.tokenizer import ClipTokenizer

    text_cfg = written["text_cfg"]
    clean = (text_cfg.get("tokenizer_kwargs") or {}).get("clean")
    ours = ClipTokenizer.from_dir(out / "textual", int(text_cfg.get("context_length", 77)), clean=clean)
    rng = np.random.default_rng(1)
    alphabet = [
        *"abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,!?'\"-()_&;éèüßø\t\n",
        *"日本語猫写真кошкаΚΑΤصورةबिल्ली고양이🐱",
        *["'s", "&amp;", "  ", "ｶﾀｶﾅ", "ＦＵＬＬ"],
    ]
    samples = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 90)))) for _ in range(500)]
    expect = tokenizer(samples).numpy()
    got = ours.encode(samples).ids
    bad = [t for t, a, b in zip(samples, got, expect, strict=True) if (a != b).any()]
    assert not bad, bad[:3]
    print(f"tokenizer: {len(samples)} random strings give open_clip's ids")


def make_family(family: str, out: Path, fixtures: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model, preprocess, tokenizer, written, tok_dir = build_family(family, Path(tmp))
        write_family_dir(family, model, tokenizer, written, tok_dir, out)
        check_family_onnx(out, model, tokenizer, family)
        check_family_tokenizer(out, tokenizer, written)
        make_family_fixtures(family, model, preprocess, tokenizer, fixtures)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{family} tiny model: {out} ({size / 1e6:.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=TINY_DIR, help="tiny model directory")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny model and fixtures")
    parser.add_argument(
        "--family",
        action="append",
        choices=[*FAMILY_DIRS, "all"],
        default=[],
        help="also write this tiny family model (indexer/model/tiny-<family>/) and its fixtures "
        "(tests/fixtures/families/<family>/); repeat, or 'all'",
    )
    parser.add_argument(
        "--vit-b32", type=Path, default=None, help="also write a full-size random-weight ViT-B/32 here"
    )
    parser.add_argument(
        "--vit-b32-256",
        type=Path,
        default=None,
        help="also write a random-weight ViT-B-32-256 (256 px input, the ingest issue's model) here",
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

    families = list(FAMILY_DIRS) if "all" in args.family else list(dict.fromkeys(args.family))
    for family in families:
        make_family(family, TINY_DIR.parent / FAMILY_DIRS[family], args.fixtures / "families" / family)

    if args.vit_b32 is not None:  # as ViT-B-32__openai: 224 px, quick GELU
        write_random_vit("ViT-B-32", "ViT-B-32-random", args.vit_b32.expanduser(), quick_gelu=True)
    if args.vit_b32_256 is not None:  # as the DataComp ViT-B-32-256: 256 px, exact GELU
        write_random_vit(
            "ViT-B-32-256", "ViT-B-32-256-random", args.vit_b32_256.expanduser(), quick_gelu=False
        )


def write_random_vit(config: str, model_id: str, out: Path, *, quick_gelu: bool) -> None:
    """A full-size model of open_clip's `config` with random weights: the compute of a trained one."""
    cfg = json.loads(json.dumps(open_clip.get_model_config(config)))
    cfg["quick_gelu"] = quick_gelu
    model, _ = build_model(cfg, model_id, SEED)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    write_model_dir(model, cfg, out, model_id)
    check_onnx(out, model)
    print(f"random {config}: {out}")


if __name__ == "__main__":
    main()
