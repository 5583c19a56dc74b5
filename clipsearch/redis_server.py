"""The managed local redis-server (Debian's package), bound to loopback, with a password.

Loopback alone would let any local user enqueue tasks or rewrite job records, so every `clipsearch up`
generates a fresh password (`requirepass`). It reaches redis-server through a 0600 config file in its
data directory (never the command line, which `ps` shows to every user), and the stack's own processes
through REDIS_URL in their environment (which only the same user can read). A restart by the supervisor
(`relaunch`) keeps the port, the data and the password: every child holds that URL, a new password would
lock them all out.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import redis

from clipsearch.processes import LOOPBACK, ManagedProcess, ensure_port_free, ensure_writable_dir, free_port
from indexer.errors import StartupError

CONFIG_NAME = "clipsearch-redis.conf"


class RedisServer:
    def __init__(
        self, data_dir: Path, log_dir: Path, port: int | None = None, password: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.password = password or secrets.token_hex(32)
        self.config_path = data_dir / CONFIG_NAME
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.binary = Path(binary)
        self.process = ManagedProcess(
            "redis",
            [
                str(self.binary),
                str(self.config_path),
                "--bind",
                LOOPBACK,
                "--port",
                str(self.port),
                "--dir",
                str(data_dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
            ],
            log_dir / "redis.log",
        )

    @property
    def url(self) -> str:
        """The URL with the password: hand it only to processes of this user (environment, not argv)."""
        return f"redis://:{self.password}@{LOOPBACK}:{self.port}/0"

    def write_config(self) -> None:
        """The password in a file only this user can read (re-written with 0600 on every start)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.config_path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, f"# written by clipsearch on every start\nrequirepass {self.password}\n".encode())
        finally:
            os.close(fd)

    def ready(self) -> bool:
        return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())

    def start(self, timeout_s: float = 20.0) -> None:
        if not self.binary.is_file():
            raise StartupError(
                "redis-server not found; run scripts/setup.sh (it installs Debian's redis-server) "
                "or set REDIS_URL to a running Redis",
            )
        ensure_writable_dir(self.data_dir, "Redis")
        ensure_port_free(self.port, "Redis")
        self.write_config()
        self.process.start()
        self.process.wait_ready(self.ready, timeout_s)

    def relaunch(self) -> None:
        """Start it again after it died, without waiting: the same port (no free-port check, which a
        socket in TIME_WAIT would fail; redis-server binds with SO_REUSEADDR), the same data directory
        (its append-only file) and the same password."""
        ensure_writable_dir(self.data_dir, "Redis")
        self.write_config()
        self.process.start()

    def stop(self) -> None:
        self.process.stop()
