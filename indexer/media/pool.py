"""A small pool of decode processes with hard limits, through which every decode of untrusted bytes runs.

Each process (indexer/media/pool_worker.py) runs one decode at a time under a CPU-time limit and an
address-space limit of its own. A decode that runs past either, or crashes its decoder, costs that one
image a DecodeLimitExceeded (422 in the API, the item's reason in a job) and costs the process, which is
replaced in the background; the caller's thread, the API or worker process and the machine are never at
stake. A wall-clock deadline (3 x the CPU limit + 5 s) backs the CPU limit for a process that stops
without using CPU: a watchdog thread kills it.

Processes start on demand, up to ``size``; a caller waits for a free one (at most ``size`` decodes run at
once, so bombs take at most ``size`` cores). They are plain subprocesses with pipes (not
multiprocessing), so the pool works the same in gunicorn's threads and in Celery's prefork children, and
it is created per process id: a forked child never shares its parent's pipes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from indexer.errors import DecodeLimitExceeded, ServiceUnavailable
from indexer.media.pool_protocol import (
    ProtocolError,
    error_from_header,
    read_exact,
    read_header,
    read_payload,
    write_frame,
)

log = logging.getLogger(__name__)

WALL_FACTOR: Final = 3.0
WALL_SLACK_S: Final = 5.0
START_TIMEOUT_S: Final = 60.0
PIPE_BYTES: Final = 1 << 20  # the default /proc/sys/fs/pipe-max-size
_CPU_SIGNALS: Final = frozenset({signal.SIGPROF, signal.SIGXCPU})
_ONE_THREAD_ENV: Final = {
    name: "1"
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")
}


# What a decode process inherits of the environment: enough to start Python, none of the service's
# settings (REDIS_URL with its password, API_KEYS, the object store's keys...), so that a decoder
# exploited into running code finds no secret to take.
_INHERITED_ENV: Final = (
    "PATH",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
)


def _child_env() -> dict[str, str]:
    return {**{k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}, **_ONE_THREAD_ENV}


@dataclass(eq=False)
class _Process:
    popen: subprocess.Popen[bytes]
    killed_by_watchdog: bool = False

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.kill()

    def reap(self) -> int:
        self.kill()
        for stream in (self.popen.stdin, self.popen.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        return self.popen.wait()


@dataclass
class _Watchdog:
    """Kills a process that is still busy at its deadline (one thread per pool, started on demand)."""

    deadlines: dict[_Process, float] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)
    thread: threading.Thread | None = None

    def arm(self, proc: _Process, deadline: float) -> None:
        with self.cond:
            self.deadlines[proc] = deadline
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="decode-watchdog", daemon=True)
                self.thread.start()
            self.cond.notify()

    def disarm(self, proc: _Process) -> None:
        with self.cond:
            self.deadlines.pop(proc, None)

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                for proc, deadline in list(self.deadlines.items()):
                    if deadline <= now:
                        del self.deadlines[proc]
                        proc.killed_by_watchdog = True
                        proc.kill()
                nearest = min(self.deadlines.values(), default=now + 60.0)
                self.cond.wait(max(0.01, nearest - now))


class DecodePool:
    def __init__(self, size: int, max_cpu_s: float, max_memory_mb: int) -> None:
        self.size = max(1, size)
        self.max_cpu_s = max_cpu_s
        self.max_memory_mb = max_memory_mb
        self.wall_s = WALL_FACTOR * max_cpu_s + WALL_SLACK_S
        self._idle: list[_Process] = []
        self._live = 0  # started or starting, idle or busy
        self._cond = threading.Condition()
        self._watchdog = _Watchdog()
        self.replaced = 0  # processes lost to a limit or a crash (and replaced)
        self.offline: bool | None = None  # whether the processes are off the network (None: none started)

    # -- public ------------------------------------------------------------------------------------
    def call(
        self, header: dict[str, Any], data: bytes, into: NDArray[np.float32] | None = None
    ) -> tuple[dict[str, Any], bytearray]:
        """Send one request; return the reply header and its payload. With ``into``, the payload starts
        with exactly ``into.nbytes`` bytes that are read straight into it (the rest is returned)."""
        proc = self._acquire()
        healthy = False
        try:
            self._watchdog.arm(proc, time.monotonic() + self.wall_s)
            try:
                assert proc.popen.stdin is not None and proc.popen.stdout is not None
                write_frame(proc.popen.stdin, header, data)
                reply, length = read_header(proc.popen.stdout)
                if not reply.get("ok"):
                    read_payload(proc.popen.stdout, length)
                    healthy = not reply.get("retire")
                    raise error_from_header(reply)
                payload = self._read_reply(proc, length, into)
            except (OSError, ProtocolError, ValueError) as exc:
                raise self._lost(proc, exc) from None
            finally:
                self._watchdog.disarm(proc)
            healthy = True
            return reply, payload
        finally:
            self._release(proc, healthy)

    def warm(self) -> None:
        """Start one process now (in the background) so that the first decode does not wait for it."""
        self._replace_soon()

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._live -= len(idle)
        for proc in idle:
            proc.reap()

    # -- processes ---------------------------------------------------------------------------------
    def _start(self) -> _Process:
        worker = "indexer.media.pool_entry"
        argv = [sys.executable, "-m", worker, repr(self.max_cpu_s), str(self.max_memory_mb)]
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # decoders warn per scan or per chunk: an attacker could fill logs
            env=_child_env(),
            close_fds=True,
        )
        _widen_pipes(popen)
        proc = _Process(popen)
        self._watchdog.arm(proc, time.monotonic() + START_TIMEOUT_S)
        try:
            assert popen.stdout is not None
            ready, length = read_header(popen.stdout)
            read_payload(popen.stdout, length)
            if not ready.get("ready"):
                raise ProtocolError(f"unexpected first frame {ready!r}")
            self._note_offline(bool(ready.get("offline")))
        except (OSError, ProtocolError) as exc:
            code = proc.reap()
            raise ServiceUnavailable(
                f"a decode process could not start (exit status {code}): {exc}", {"reason": "decoder_start"}
            ) from exc
        finally:
            self._watchdog.disarm(proc)
        return proc

    def _note_offline(self, offline: bool) -> None:
        """Whether the decode processes are cut off the network; said once when they are not."""
        if not offline and self.offline is not False:
            log.warning(
                "decode processes keep network access: this system allows no network namespace "
                "(unprivileged user namespaces, or CAP_SYS_ADMIN); the CPU and memory limits still hold"
            )
        self.offline = offline

    def _acquire(self) -> _Process:
        with self._cond:
            while True:
                while self._idle:
                    proc = self._idle.pop()
                    if proc.popen.poll() is None:
                        return proc
                    self._live -= 1  # died while idle (killed from outside): start another
                    proc.reap()
                if self._live < self.size:
                    self._live += 1
                    break
                self._cond.wait()
        try:
            return self._start()
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise

    def _release(self, proc: _Process, healthy: bool) -> None:
        if healthy and not proc.killed_by_watchdog:  # (killed just as its answer came: not reusable)
            with self._cond:
                self._idle.append(proc)
                self._cond.notify()
            return
        proc.reap()
        with self._cond:
            self._live -= 1
            self.replaced += 1
            self._cond.notify()
        self._replace_soon()

    def _replace_soon(self) -> None:
        """Start a process in the background when the pool is below its size."""
        with self._cond:
            if self._live >= self.size:
                return
            self._live += 1

        def start() -> None:
            try:
                proc = self._start()
            except Exception:  # whatever stopped the start, its slot must be given back or the pool shrinks
                log.exception("a decode process could not start")
                with self._cond:
                    self._live -= 1
                    self._cond.notify()
                return
            with self._cond:
                self._idle.append(proc)
                self._cond.notify()

        threading.Thread(target=start, name="decode-start", daemon=True).start()

    def _read_reply(self, proc: _Process, length: int, into: NDArray[np.float32] | None) -> bytearray:
        assert proc.popen.stdout is not None
        if into is None:
            return read_payload(proc.popen.stdout, length)
        if length < into.nbytes or not into.flags.c_contiguous:
            raise ProtocolError(f"a reply of {length} bytes for a tensor of {into.nbytes}")
        read_exact(proc.popen.stdout, into.data.cast("B"))
        return read_payload(proc.popen.stdout, length - into.nbytes)

    def _lost(self, proc: _Process, exc: BaseException) -> DecodeLimitExceeded:
        """The typed error for a process that died or broke the protocol in the middle of a decode."""
        code = proc.reap()
        if proc.killed_by_watchdog:
            return DecodeLimitExceeded(
                f"decoding this image took longer than {self.wall_s:.0f} s and was stopped",
                {"reason": "decode_cpu_limit", "limit_s": self.max_cpu_s, "wall_s": self.wall_s},
            )
        if -code in _CPU_SIGNALS:
            return DecodeLimitExceeded(
                f"decoding this image needs more than {self.max_cpu_s:g} s of CPU time (DECODE_MAX_CPU_S)",
                {"reason": "decode_cpu_limit", "limit_s": self.max_cpu_s},
            )
        log.warning("a decode process ended with status %s mid-decode: %s", code, exc)
        return DecodeLimitExceeded(
            "the decoder crashed on this image (or ran out of memory: DECODE_MAX_MEMORY_MB is "
            f"{self.max_memory_mb})",
            {"reason": "decoder_crashed", "exit_status": code},
        )


def _widen_pipes(popen: subprocess.Popen[bytes]) -> None:
    """Pipes of PIPE_BYTES each way where the system allows it (Linux's default is 64 KiB): a model input
    (768 KiB at 256 px) then crosses in one write instead of a dozen, each a wake-up of the other side.
    Measured on 2 cores, small photos (224 to 1024 px) through one decode process: 1.6 -> 1.1 ms of CPU
    a photo over a decode in the calling thread."""
    for stream in (popen.stdin, popen.stdout):
        if stream is not None:
            with contextlib.suppress(OSError, AttributeError):  # a smaller pipe-max-size; not Linux
                fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


_pools: dict[tuple[int, int, float, int], DecodePool] = {}
_pools_lock = threading.Lock()


def shared_pool(size: int, max_cpu_s: float, max_memory_mb: int) -> DecodePool:
    """This process's pool for these limits (one per process id: a fork gets its own)."""
    key = (os.getpid(), size, max_cpu_s, max_memory_mb)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = DecodePool(size, max_cpu_s, max_memory_mb)
        return pool
