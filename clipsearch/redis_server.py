"""The managed local redis-server (Debian's package), bound to loopback."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from clipsearch.processes import LOOPBACK, ManagedProcess, ensure_port_free, ensure_writable_dir, free_port
from indexer.errors import StartupError


class RedisServer:
    def __init__(self, data_dir: Path, log_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.binary = Path(binary)
        self.process = ManagedProcess(
            "redis",
            [
                str(self.binary),
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
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _ready(self) -> bool:
        return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())

    def start(self, timeout_s: float = 20.0) -> None:
        if not self.binary.is_file():
            raise StartupError(
                "redis-server not found; run scripts/setup.sh (it installs Debian's redis-server) "
                "or set REDIS_URL to a running Redis",
            )
        ensure_writable_dir(self.data_dir, "Redis")
        ensure_port_free(self.port, "Redis")
        self.process.start()
        self.process.wait_ready(self._ready, timeout_s)

    def stop(self) -> None:
        self.process.stop()
