"""Distinct, deterministic test images made with numpy and OpenCV."""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np


def make_image(seed: int, width: int = 320, height: int = 240, ext: str = ".jpg") -> bytes:
    """Coloured blocks and a circle: every seed gives a visually different picture."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    img = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST)
    center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
    color = tuple(int(c) for c in rng.integers(0, 256, size=3))
    cv2.circle(img, center, int(min(width, height) // 4), color, thickness=-1)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return bytes(buf.tobytes())


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()
