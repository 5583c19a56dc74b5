"""The frames between a decode process and its parent (indexer/media/pool.py, indexer/media/pool_worker.py).

A frame is two big-endian u32 lengths, a JSON header of the first length and a binary payload of the
second. JSON, never pickle: the parent reads what a process that parsed hostile bytes wrote, and a
decoder exploited into writing anything must still not get code run in the parent. The parent also
checks every length and shape against what it asked for.

Errors cross as ``{"ok": false, "error": {"kind", "message", "details"}}``; only the kinds below are
turned back into their typed errors, anything else is a crashed decoder.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any, Final

from indexer.errors import (
    ClipsearchError,
    DecodeLimitExceeded,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)

_LENGTHS: Final = struct.Struct(">II")
MAX_HEADER_BYTES: Final = 64 * 1024
ERROR_KINDS: Final[dict[str, type[ClipsearchError]]] = {
    cls.__name__: cls for cls in (InvalidInput, PayloadTooLarge, UnsupportedMediaType, DecodeLimitExceeded)
}


class ProtocolError(Exception):
    """The other end closed its pipe or wrote something that is not a frame we asked for."""


def write_frame(out: IO[bytes], header: dict[str, Any], *payload: bytes | memoryview) -> None:
    head = json.dumps(header, separators=(",", ":")).encode()
    out.write(_LENGTHS.pack(len(head), sum(memoryview(p).nbytes for p in payload)))
    out.write(head)
    for part in payload:
        out.write(part)
    out.flush()


def read_exact(src: IO[bytes], view: memoryview) -> None:
    """Fill ``view`` from ``src``; ProtocolError when the stream ends first."""
    got = 0
    while got < view.nbytes:
        n = src.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise ProtocolError("the decode process closed its pipe")
        got += n


def read_header(src: IO[bytes]) -> tuple[dict[str, Any], int]:
    """A frame's header and the length of the payload that follows it (still to be read)."""
    lengths = bytearray(_LENGTHS.size)
    read_exact(src, memoryview(lengths))
    head_len, payload_len = _LENGTHS.unpack(lengths)
    if head_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"a frame header of {head_len} bytes")
    head = bytearray(head_len)
    read_exact(src, memoryview(head))
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise ProtocolError(f"a frame header that is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("a frame header that is not an object")
    return header, payload_len


def read_payload(src: IO[bytes], length: int) -> bytearray:
    """A payload, in the buffer it was read into (pixels become an array of it without a copy)."""
    buf = bytearray(length)
    read_exact(src, memoryview(buf))
    return buf


def error_header(exc: ClipsearchError) -> dict[str, Any]:
    kind = type(exc).__name__ if type(exc).__name__ in ERROR_KINDS else "InvalidInput"
    return {"ok": False, "error": {"kind": kind, "message": exc.message, "details": exc.details}}


def error_from_header(header: dict[str, Any]) -> ClipsearchError:
    """The typed error a decode process reported."""
    error = header.get("error")
    if not isinstance(error, dict) or error.get("kind") not in ERROR_KINDS:
        return DecodeLimitExceeded(
            "the decoder failed on this image", {"reason": "decoder_crashed", "reply": str(error)[:200]}
        )
    details = error.get("details")
    return ERROR_KINDS[error["kind"]](
        str(error.get("message", ""))[:2000], details if isinstance(details, dict) else {}
    )
