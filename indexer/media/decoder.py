"""The one way the service decodes bytes from outside: ``decoder_for(settings)``.

``DECODE_ISOLATION=process`` (the default) sends every decode through this process's pool of limited
decode processes (indexer/media/pool.py); ``inline`` decodes in the calling thread with the same
checks and no limits (for benchmarks, and for callers that decode only bytes they trust). Both do the
same checks first (indexer/media/ops.py): the pixel cap and the JPEG scan limits.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from indexer.errors import DecodeLimitExceeded, InvalidInput
from indexer.media import exif
from indexer.media import ops as decode_ops
from indexer.media.decode import FORMAT_MIME, DecodedImage
from indexer.media.ops import DecodeChecks, Prepared
from indexer.media.pool import DecodePool, shared_pool
from indexer.media.pool_protocol import ProtocolError
from indexer.model.preprocess import PreprocessConfig
from indexer.settings import Settings


class Decoder(Protocol):
    def decode(
        self, data: bytes, max_pixels: int, *, min_side: int | None = None, exif_orientation: bool = True
    ) -> DecodedImage:
        """The checked RGB pixels (reduced for ``min_side`` as ``indexer.media.decode.decode_image`` does)."""
        ...

    def prepare(
        self,
        data: bytes,
        max_pixels: int,
        cfg: PreprocessConfig,
        out: NDArray[np.float32],
        *,
        min_side: int | None,
        thumbnail_size: int = 0,
        photo: bool = False,
    ) -> Prepared:
        """Decode and write the model input into ``out`` (and make a thumbnail, and read the photo
        metadata, when asked)."""
        ...

    def warm(self) -> None:
        """Be ready for the first decode (start a process)."""
        ...


class InlineDecoder:
    """Decodes in the calling thread: the checks, no CPU or memory limit."""

    def __init__(self, jpeg_max_scans: int, jpeg_max_scan_pixels: int) -> None:
        self.scans = (jpeg_max_scans, jpeg_max_scan_pixels)

    @classmethod
    def with_defaults(cls) -> InlineDecoder:
        """The settings' default scan limits, for an encoder built without settings (tests, tools)."""
        fields = Settings.model_fields
        return cls(fields["jpeg_max_scans"].default, fields["jpeg_max_scan_pixels"].default)

    def checks(self, max_pixels: int) -> DecodeChecks:
        return DecodeChecks(max_pixels, *self.scans)

    def decode(
        self, data: bytes, max_pixels: int, *, min_side: int | None = None, exif_orientation: bool = True
    ) -> DecodedImage:
        checks = self.checks(max_pixels)
        return decode_ops.decode(data, checks, min_side=min_side, exif_orientation=exif_orientation)

    def prepare(
        self,
        data: bytes,
        max_pixels: int,
        cfg: PreprocessConfig,
        out: NDArray[np.float32],
        *,
        min_side: int | None,
        thumbnail_size: int = 0,
        photo: bool = False,
    ) -> Prepared:
        checks = self.checks(max_pixels)
        return decode_ops.prepare(
            data, checks, cfg, out, min_side=min_side, thumbnail_size=thumbnail_size, photo=photo
        )

    def warm(self) -> None:
        """Nothing to start."""


class PooledDecoder(InlineDecoder):
    """Decodes in this process's pool of limited decode processes (one pool per process id)."""

    def __init__(
        self, jpeg_max_scans: int, jpeg_max_scan_pixels: int, size: int, max_cpu_s: float, max_memory_mb: int
    ) -> None:
        super().__init__(jpeg_max_scans, jpeg_max_scan_pixels)
        self.limits = (size, max_cpu_s, max_memory_mb)

    @property
    def pool(self) -> DecodePool:
        return shared_pool(*self.limits)

    def _request(self, op: str, max_pixels: int, min_side: int | None) -> dict[str, object]:
        checks = self.checks(max_pixels)
        return {"op": op, "min_side": min_side, "checks": checks.__dict__}

    def decode(
        self, data: bytes, max_pixels: int, *, min_side: int | None = None, exif_orientation: bool = True
    ) -> DecodedImage:
        header = {**self._request("decode", max_pixels, min_side), "exif": exif_orientation}
        reply, payload = self.pool.call(header, data)
        try:
            shape = tuple(int(n) for n in reply["shape"])
            fmt, width, height = _meta(reply)
            if len(shape) != 3 or shape[2] != 3 or shape[0] * shape[1] > max_pixels:
                raise ProtocolError(f"pixels of shape {shape}")
            pixels = np.frombuffer(payload, dtype=np.uint8).reshape(shape)
            reduction = int(reply.get("reduction", 1))
            step = _step(reply.get("step"))
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            raise _bad_reply(exc) from exc
        return DecodedImage(
            pixels=pixels, format=fmt, width=width, height=height, reduction=reduction, step=step
        )

    def prepare(
        self,
        data: bytes,
        max_pixels: int,
        cfg: PreprocessConfig,
        out: NDArray[np.float32],
        *,
        min_side: int | None,
        thumbnail_size: int = 0,
        photo: bool = False,
    ) -> Prepared:
        header = {
            **self._request("prepare", max_pixels, min_side),
            "cfg": decode_ops.config_dict(cfg),
            "thumbnail": thumbnail_size,
            "photo": photo,
        }
        reply, thumbnail = self.pool.call(header, data, into=out)
        try:
            fmt, width, height = _meta(reply)
            if len(thumbnail) != int(reply["thumbnail"]):
                raise ProtocolError("thumbnail length")
            metadata = exif.from_json(reply["photo"]) if photo and reply.get("photo") is not None else None
        except (KeyError, TypeError, ValueError, ProtocolError, InvalidInput) as exc:
            raise _bad_reply(exc) from exc
        return Prepared(fmt, width, height, bytes(thumbnail), metadata)

    def warm(self) -> None:
        self.pool.warm()


def _meta(reply: dict[str, object]) -> tuple[str, int, int]:
    fmt, width, height = str(reply["format"]), int(reply["width"]), int(reply["height"])  # type: ignore[call-overload]
    if fmt not in FORMAT_MIME or width <= 0 or height <= 0:
        raise ProtocolError(f"an image {fmt!r} of {width}x{height}")
    return fmt, width, height


def _step(value: object) -> tuple[float, float] | None:
    """A RAW preview's full-resolution pixels per decoded pixel (DecodedImage.pixel_step), or None."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise ProtocolError(f"a pixel step of {value!r}")
    x, y = (float(v) for v in value)
    if not (0 < x < 1e6 and 0 < y < 1e6):
        raise ProtocolError(f"a pixel step of {value!r}")
    return x, y


def _bad_reply(exc: Exception) -> DecodeLimitExceeded:
    return DecodeLimitExceeded(
        "the decoder answered with something other than an image",
        {"reason": "decoder_crashed", "why": str(exc)},
    )


def pool_size(settings: Settings) -> int:
    return settings.decode_pool_size or max(1, min(4, os.cpu_count() or 1))


def decoder_for(settings: Settings) -> InlineDecoder:
    """The decoder that DECODE_ISOLATION picks, with the settings' limits."""
    scans = (settings.jpeg_max_scans, settings.jpeg_max_scan_pixels)
    if settings.decode_isolation == "inline":
        return InlineDecoder(*scans)
    return PooledDecoder(
        *scans, pool_size(settings), settings.decode_max_cpu_s, settings.decode_max_memory_mb
    )
