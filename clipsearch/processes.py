"""Managed child processes: free-port checks, a readiness wait, log capture and clean shutdown."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from indexer.errors import StartupError

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class _HandedPorts:
    """The ports `free_port` handed out lately in this process. A port is only picked, not held, until
    its server binds it, and the kernel may pick a closed port again: a 3-node cluster takes 18 ports
    before any node binds one, so two of its listeners could be given the same port."""

    def __init__(self, keep: int = 4096) -> None:
        self.recent: collections.deque[int] = collections.deque(maxlen=keep)
        self.lock = threading.Lock()

    def claim(self, port: int) -> bool:
        with self.lock:
            if port in self.recent:
                return False
            self.recent.append(port)
            return True


_HANDED = _HandedPorts()


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free on `host` right now (the kernel picks it), and not one this process handed
    out lately."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if _HANDED.claim(port):
            return port
    raise StartupError(f"no free port on {host} that this process has not handed out already")


def ensure_port_free(port: int, purpose: str, host: str = LOOPBACK) -> None:
    """Raise StartupError naming the port and its purpose when something already listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"cannot start {purpose}: port {port} on {host} is already in use",
                    {"port": port, "purpose": purpose},
                ) from exc
            raise


def ensure_writable_dir(path: Path, purpose: str) -> None:
    """Create `path` if needed and prove that we can write there, or raise StartupError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"cannot start {purpose}: data directory {path} is not writable ({exc.strerror})",
            {"path": str(path), "purpose": purpose},
        ) from exc


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """One child process that we start, wait for, and stop.

    The child runs in its own session (Ctrl-C in a terminal reaches only us, and we stop children in
    order) and gets SIGTERM if we die, so nothing outlives the supervisor.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                preexec_fn=_die_with_parent,  # setsid and PDEATHSIG between fork and exec
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float) -> None:
        """Poll `probe` until it returns True; fail fast with the log tail if the child exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.process.returncode if self.process else None
                raise StartupError(
                    f"{self.name} exited during start-up (exit code {code}); last log lines:\n"
                    f"{self.log_tail()}",
                    {"log": str(self.log_path)},
                )
            with contextlib.suppress(Exception):
                if probe():
                    return
            time.sleep(0.2)
        self.stop()
        raise StartupError(
            f"{self.name} was not ready after {timeout_s:.0f} s; last log lines:\n{self.log_tail()}",
            {"log": str(self.log_path)},
        )

    def reap(self) -> None:
        """After the child died: kill what it left in its process group (a gunicorn worker still holding
        the port, a Celery pool process still running a task), so that a restart starts clean."""
        if self.process is not None and self.process.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None


def stop_all(procs: Sequence[ManagedProcess], timeout_s: float = 20.0) -> None:
    """Stop several processes together: SIGTERM to each at once, then wait for all against one deadline
    (SIGKILL past it), so that the group takes at most about ``timeout_s``, not that much per process."""
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        proc.stop(timeout_s=max(0.1, deadline - time.monotonic()))
