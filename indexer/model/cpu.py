"""The CPU features that decide which int8 kernels ONNX Runtime runs (read from /proc/cpuinfo).

x86-64: AVX2, AVX-512 (F+BW), VNNI (AVX512-VNNI or AVX-VNNI), AMX (tiles with int8). Arm: NEON, DOTPROD
(SDOT/UDOT), I8MM. The U8S8 int8 kernels of AVX2 and AVX-512 *without* VNNI sum pairs of u8*s8 products
in int16 (vpmaddubsw) and saturate when both weights of a pair are large; with VNNI the products are summed
in int32 and nothing saturates.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

_X86 = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "AMX": ("amx_int8",),
}
_ARM = {"NEON": ("asimd", "neon"), "DOTPROD": ("asimddp",), "I8MM": ("i8mm",)}


def parse_cpuinfo(text: str) -> tuple[str, list[str]]:
    """(model name, feature names) from the text of /proc/cpuinfo."""
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    table = _ARM if ("asimd" in flags or "neon" in flags) else _X86
    return model, [name for name, names in table.items() if any(n in flags for n in names)]


@functools.cache
def cpu_description() -> tuple[str, tuple[str, ...]]:
    """(model name, features) of this machine; the model name falls back to the architecture."""
    try:
        model, features = parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        model, features = "", []
    return model or platform.machine() or "unknown", tuple(features)


def u8s8_saturates(features: tuple[str, ...]) -> bool:
    """Whether ONNX Runtime's U8S8 kernels can saturate here: x86 with AVX2 but no VNNI."""
    return "AVX2" in features and "VNNI" not in features
