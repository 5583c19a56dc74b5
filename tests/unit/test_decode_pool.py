"""The decode pool (indexer/media/pool.py): the same answers as an inline decode, the scan-bomb checks,
and a decode past a limit failing alone while its process is replaced."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from indexer.errors import DecodeLimitExceeded, InvalidInput
from indexer.media.decoder import InlineDecoder, PooledDecoder
from indexer.media.pool import PIPE_BYTES, DecodePool
from indexer.model.preprocess import PreprocessConfig
from tests.craft import scan_bomb
from tests.imagegen import make_image
from tests.preconditions import missing

CFG = PreprocessConfig()
MAX_PIXELS = 64_000_000
SCANS = (500, 100 * MAX_PIXELS)


@pytest.fixture()
def pooled() -> Iterator[PooledDecoder]:
    decoder = PooledDecoder(*SCANS, 1, 1.0, 512)
    yield decoder
    decoder.pool.close()


def _tensor() -> np.ndarray:
    return np.empty((3, *CFG.size), dtype=np.float32)


def test_pooled_answers_as_inline(pooled: PooledDecoder) -> None:
    data = make_image(3, 800, 600)
    here, there = _tensor(), _tensor()
    a = InlineDecoder(*SCANS).prepare(data, MAX_PIXELS, CFG, here, min_side=336, thumbnail_size=128)
    b = pooled.prepare(data, MAX_PIXELS, CFG, there, min_side=336, thumbnail_size=128)
    assert a == b and a.thumbnail and (a.format, a.width, a.height) == ("jpeg", 800, 600)
    np.testing.assert_array_equal(here, there)
    full = pooled.decode(data, MAX_PIXELS)
    assert full.pixels.shape == (600, 800, 3) and full.reduction == 1


def test_typed_errors_cross_the_pipe(pooled: PooledDecoder) -> None:
    with pytest.raises(InvalidInput) as caught:
        pooled.decode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, MAX_PIXELS)
    assert caught.value.details["reason"] == "corrupt"
    assert pooled.pool.replaced == 0  # an ordinary refusal keeps its process


@pytest.mark.parametrize("decoder", ["inline", "pooled"])
def test_scan_bombs_are_refused_from_the_markers(decoder: str, pooled: PooledDecoder) -> None:
    dec = pooled if decoder == "pooled" else InlineDecoder(*SCANS)
    with pytest.raises(InvalidInput) as many:
        dec.decode(scan_bomb(256, 256, 2000), MAX_PIXELS)
    assert many.value.details["reason"] == "too_many_scans" and many.value.details["scans"] > 2000
    with pytest.raises(InvalidInput) as work:
        dec.decode(scan_bomb(4000, 4000, 450), MAX_PIXELS)
    assert work.value.details["reason"] == "scan_work"
    ordinary = dec.decode(scan_bomb(512, 512, 0), MAX_PIXELS)  # a plain progressive JPEG decodes
    assert ordinary.pixels.shape == (512, 512, 3)


def test_a_decode_past_its_cpu_limit_fails_alone_and_its_process_is_replaced() -> None:
    decoder = PooledDecoder(500, 10**15, 1, 0.3, 1024)  # the scan checks off: the bomb reaches the decoder
    try:
        with pytest.raises(DecodeLimitExceeded) as caught:
            decoder.decode(scan_bomb(6000, 6000, 450), MAX_PIXELS)
        assert caught.value.details["reason"] == "decode_cpu_limit"
        assert decoder.pool.replaced == 1
        assert decoder.decode(make_image(1), MAX_PIXELS).format == "jpeg"
    finally:
        decoder.pool.close()


def test_a_decode_past_its_memory_limit_fails_alone() -> None:
    ok, png = cv2.imencode(".png", np.zeros((6000, 6000, 3), dtype=np.uint8))  # 108 MB of pixels
    assert ok
    decoder = PooledDecoder(*SCANS, 1, 10.0, 64)
    try:
        with pytest.raises(DecodeLimitExceeded) as caught:
            decoder.decode(png.tobytes(), MAX_PIXELS)
        assert caught.value.details["reason"] in ("decode_memory_limit", "decoder_crashed")
        assert decoder.decode(make_image(2), MAX_PIXELS).format == "jpeg"
    finally:
        decoder.pool.close()


def test_a_process_killed_while_idle_is_replaced(pooled: PooledDecoder) -> None:
    pooled.decode(make_image(4), MAX_PIXELS)
    pool: DecodePool = pooled.pool
    (proc,) = pool._idle
    os.kill(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait()
    assert pooled.decode(make_image(5), MAX_PIXELS).format == "jpeg"
    assert pool._idle and pool._idle[0] is not proc


def test_a_model_input_crosses_its_pipe_in_one_write(pooled: PooledDecoder) -> None:
    pooled.decode(make_image(4), MAX_PIXELS)
    (proc,) = pooled.pool._idle
    max_size = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    for stream in (proc.popen.stdin, proc.popen.stdout):
        assert stream is not None
        size = fcntl.fcntl(stream.fileno(), fcntl.F_GETPIPE_SZ)
        assert size == PIPE_BYTES if max_size >= PIPE_BYTES else size >= 64 * 1024
    assert PIPE_BYTES >= 4 * 3 * 256 * 256  # a 256 px model input in float32


def test_a_decode_process_inherits_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("API_KEYS", "hunter3")
    decoder = PooledDecoder(*SCANS, 1, 1.0, 256)
    try:
        decoder.decode(make_image(6), MAX_PIXELS)
        (proc,) = decoder.pool._idle
        environ = Path(f"/proc/{proc.popen.pid}/environ").read_bytes()
        assert b"hunter" not in environ and b"OMP_NUM_THREADS=1" in environ
    finally:
        decoder.pool.close()


def _namespaces_allowed() -> bool:
    """Whether this system lets a process enter a new network namespace (util-linux's own check)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        missing("no unshare(1) to tell whether network namespaces are allowed here")  # fails under CI
    flags = ["--net"] if os.geteuid() == 0 else ["--user", "--net"]
    return subprocess.run([unshare, *flags, "true"], capture_output=True, check=False).returncode == 0


def test_a_decode_process_cannot_reach_the_network(pooled: PooledDecoder) -> None:
    """A decoder exploit must not reach Redis, Weaviate or the internet: the process leaves the network
    before it reads a byte (indexer/media/sandbox.py). Checked by connecting out from a process that did
    what the decode process does first, to a server of this test on loopback."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = (
            "import socket, sys\n"
            "from indexer.media.sandbox import drop_network\n"
            "offline = drop_network()\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close(); reached = True\n"
            "except OSError:\n"
            "    reached = False\n"
            "print(offline, reached)\n"
        )
        ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    offline, reached = ran.stdout.split()
    assert (offline, reached) in {("True", "False"), ("False", "True")}, ran.stdout
    assert (offline == "True") == _namespaces_allowed()
    pooled.decode(make_image(5, 64, 64), MAX_PIXELS)  # and the pool's processes run that way
    assert pooled.pool.offline is (offline == "True")
