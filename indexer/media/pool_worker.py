"""One decode process of the pool, started as ``python -m indexer.media.pool_entry <max_cpu_s>
<max_memory_mb>`` (which first takes the process off the network: indexer/media/sandbox.py).

It imports every decoder first, then takes its limits, so that they bound what a decode adds:

- address space (RLIMIT_AS): what the process maps after its imports, plus ``max_memory_mb``. An
  allocation past it fails (MemoryError, or an allocation error of the decoder): the image fails with
  reason ``decode_memory_limit`` and the process retires (its heap is suspect);
- CPU time per request: ITIMER_PROF (process CPU time, any fraction of a second) whose SIGPROF ends the
  process, with RLIMIT_CPU (whole seconds, SIGXCPU) armed one second behind it as the kernel's backstop.
  Neither is caught: the kernel ends the process mid-decode, wherever the decoder is;
- no core files (RLIMIT_CORE 0).

It then answers request frames (indexer/media/pool_protocol.py) on stdin/stdout one at a time until stdin
closes. Its stdout is the protocol alone: file descriptor 1 is pointed at stderr, so that a decoder
printing warnings cannot corrupt a frame.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
from typing import IO, Any

import cv2
import numpy as np

from indexer.errors import ClipsearchError, DecodeLimitExceeded
from indexer.media import exif
from indexer.media.ops import DecodeChecks, decode, prepare
from indexer.media.pool_protocol import ProtocolError, error_header, read_header, read_payload, write_frame
from indexer.model.preprocess import PreprocessConfig

_MEMORY_WORDS = ("memory", "alloc")


def _import_decoders() -> None:
    """The lazily imported decoders, now: their libraries count in the base, not in a decode's budget."""
    for name in ("PIL.Image", "PIL.AvifImagePlugin", "pi_heif", "imagecodecs", "rawpy"):
        with contextlib.suppress(ImportError):
            __import__(name)


def _address_space() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _arm(cpu_s: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(used + cpu_s) + 1, hard))
    signal.setitimer(signal.ITIMER_PROF, cpu_s)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_PROF, 0)


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation failed somewhere in the chain (MemoryError, or a decoder's own allocation error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError):
            return True
        if isinstance(seen, cv2.error | OSError | RuntimeError | ValueError) and any(
            word in str(seen).lower() for word in _MEMORY_WORDS
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _memory_error(memory_mb: int) -> DecodeLimitExceeded:
    return DecodeLimitExceeded(
        f"decoding this image needs more than the {memory_mb} MB a decode may use (DECODE_MAX_MEMORY_MB)",
        {"reason": "decode_memory_limit", "limit_mb": memory_mb},
    )


def _answer(out: IO[bytes], header: dict[str, Any], data: bytes) -> None:
    checks = DecodeChecks(**header["checks"])
    min_side = header.get("min_side")
    if header["op"] == "prepare":
        cfg = PreprocessConfig.from_dict(header["cfg"])
        tensor = np.empty((3, *cfg.size), dtype=np.float32)
        meta = prepare(
            data,
            checks,
            cfg,
            tensor,
            min_side=min_side,
            thumbnail_size=int(header.get("thumbnail", 0)),
            photo=bool(header.get("photo", False)),
        )
        reply = {"ok": True, "format": meta.format, "width": meta.width, "height": meta.height}
        photo = None if meta.photo is None else exif.to_json(meta.photo)
        write_frame(
            out, {**reply, "thumbnail": len(meta.thumbnail), "photo": photo}, tensor.data, meta.thumbnail
        )
        return
    image = decode(data, checks, min_side=min_side, exif_orientation=bool(header.get("exif", True)))
    pixels = np.ascontiguousarray(image.pixels)
    reply = {"ok": True, "format": image.format, "width": image.width, "height": image.height}
    extra = {"reduction": image.reduction, "step": image.step, "shape": list(pixels.shape)}
    write_frame(out, {**reply, **extra}, pixels.data)


def serve(inp: IO[bytes], out: IO[bytes], cpu_s: float, memory_mb: int) -> None:
    while True:
        try:
            header, length = read_header(inp)
            data = bytes(read_payload(inp, length))
        except ProtocolError:
            return  # the parent closed the pipe: done
        _arm(cpu_s)
        try:
            _answer(out, header, data)
            continue
        except ClipsearchError as exc:
            if not _out_of_memory(exc):
                write_frame(out, error_header(exc))
                continue
            reply = error_header(_memory_error(memory_mb))
        except Exception as exc:  # a decoder library's own error: answered as a crash, the process goes on
            if not _out_of_memory(exc):
                reply = {"ok": False, "error": {"kind": "crash", "message": type(exc).__name__}}
                write_frame(out, reply)
                continue
            reply = error_header(_memory_error(memory_mb))
        finally:
            _disarm()
        write_frame(out, {**reply, "retire": True})
        return


def main(argv: list[str], offline: bool = False) -> int:
    cpu_s, memory_mb = float(argv[1]), int(argv[2])
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into a frame
    inp = os.fdopen(0, "rb")
    _import_decoders()
    cv2.setNumThreads(1)
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    base = _address_space()
    limit = base + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    write_frame(out, {"ready": True, "address_space": base, "limit": limit, "offline": offline})
    serve(inp, out, cpu_s, memory_mb)
    return 0
