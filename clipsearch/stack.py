"""The whole local stack in one object: Redis, Weaviate, a Celery worker and the API.

`clipsearch up` and the integration-test fixture both use it, so the tests exercise exactly what users
run. Parts whose URL is configured (REDIS_URL, WEAVIATE_URL) are used as they are, not started.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import redis
import requests

from clipsearch.object_store_server import ObjectStoreServer, object_store_binary
from clipsearch.processes import LOOPBACK, ManagedProcess, ensure_port_free, stop_all
from clipsearch.redis_server import RedisServer
from clipsearch.weaviate_server import WeaviateCluster, WeaviateServer
from indexer.errors import StartupError
from indexer.jobs.heartbeat import worker_alive
from indexer.settings import Settings
from search_api.guard import check_bind


class LocalStack:
    """``object_store``: also start the S3-compatible store (rclone serve s3) and put staging and blobs
    there; ``weaviate_nodes`` > 1: a loopback Weaviate cluster instead of a single node."""

    def __init__(
        self,
        settings: Settings,
        *,
        api: bool = True,
        worker: bool = True,
        object_store: bool = False,
        weaviate_nodes: int = 1,
    ) -> None:
        self.settings = settings
        self.log_dir = settings.data_dir / "logs"
        self.redis = None if settings.redis_url else RedisServer(settings.data_dir / "redis", self.log_dir)
        self.object_store = (
            ObjectStoreServer(object_store_binary(settings), settings.data_dir / "object-store", self.log_dir)
            if object_store and not settings.blob_store_url
            else None
        )
        # Weaviate backs up into the object store too (backup-s3), when there is one
        backup_s3 = self.object_store.weaviate_backup_env() if self.object_store else None
        self.weaviate: WeaviateServer | WeaviateCluster | None = None
        if settings.weaviate_url:
            pass
        elif weaviate_nodes > 1:
            self.weaviate = WeaviateCluster(
                settings.weaviate_binary_path,
                settings.data_dir / "weaviate",
                self.log_dir,
                weaviate_nodes,
                backup_s3=backup_s3,
            )
        else:
            self.weaviate = WeaviateServer(
                settings.weaviate_binary_path,
                settings.data_dir / "weaviate",
                self.log_dir,
                backup_s3=backup_s3,
            )
        self.want_api = api
        self.want_worker = worker
        self.api: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.api_port = settings.api_port
        self._redis: redis.Redis | None = None

    # -- addresses -------------------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        return self.redis.url if self.redis else str(self.settings.redis_url)

    @property
    def weaviate_url(self) -> str:
        return self.weaviate.url if self.weaviate else str(self.settings.weaviate_url)

    @property
    def weaviate_grpc_port(self) -> int:
        return self.weaviate.ports.grpc if self.weaviate else self.settings.weaviate_grpc_port

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.api_port}"

    def service_settings(self) -> Settings:
        """These settings pointed at this stack's parts (for in-process clients: tests, the CLI)."""
        settings = self.settings.model_copy(
            update={
                "redis_url": self.redis_url,
                "weaviate_url": self.weaviate_url,
                "weaviate_grpc_port": self.weaviate_grpc_port,
            }
        )
        return self.object_store.settings(settings) if self.object_store else settings

    def child_env(self) -> dict[str, str]:
        """The environment that makes a child process talk to this stack."""
        env = dict(os.environ)
        if self.object_store:
            env.update(self.object_store.env())
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "WEAVIATE_URL": self.weaviate_url,
                "WEAVIATE_GRPC_PORT": str(self.weaviate_grpc_port),
                "DATA_DIR": str(self.settings.data_dir),
                "MODEL_ID": self.settings.model_id,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.want_api:
            check_bind(self.settings.api_host, self.settings)  # no open API without keys or consent
        try:
            if self.want_api:
                ensure_port_free(self.api_port, "the API", self.settings.api_host)
            if self.redis:
                self.redis.start()
            if self.object_store:
                self.object_store.start()
            if self.weaviate:
                self.weaviate.start()
            if self.want_worker:
                self.start_worker()
            if self.want_api:
                self.start_api()
        except BaseException:
            self.stop()
            raise

    def start_worker(self, timeout_s: float = 60.0, data_dir: Path | None = None) -> ManagedProcess:
        """Start one more worker; ``data_dir``: its own DATA_DIR (a worker on another machine, which
        shares only the URLs of Redis, Weaviate and the object store)."""
        proc = self.launch_worker(data_dir)
        self.workers.append(proc)
        proc.wait_ready(lambda: self.worker_answers(proc), timeout_s)
        return proc

    def launch_worker(self, data_dir: Path | None = None) -> ManagedProcess:
        """A new worker process (a fresh Celery name), started without waiting for it."""
        name = f"worker-{uuid.uuid4().hex[:8]}@{LOOPBACK}"
        env = self.child_env()
        if data_dir is not None:
            env["DATA_DIR"] = str(data_dir)
        proc = ManagedProcess(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.app",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={self.settings.worker_concurrency}",
                "--hostname",
                name,
                "--queues",
                "clipsearch",
                "--without-gossip",
                "--without-mingle",
            ],
            self.log_dir / f"{name.split('@')[0]}.log",
            env=env,
        )
        proc.start()
        return proc

    def worker_answers(self, proc: ManagedProcess) -> bool:
        """The worker is consuming: its heartbeat is in Redis (written from Celery's worker_ready on). One
        round trip with a one-second timeout, never a broadcast that waits on the broker."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, socket_timeout=1, socket_connect_timeout=1)
        return worker_alive(self._redis, proc.name)

    def start_api(self, timeout_s: float = 60.0) -> None:
        self.launch_api()
        assert self.api is not None
        self.api.wait_ready(self.api_answers, timeout_s)

    def launch_api(self) -> None:
        """The API process (gunicorn) on the stack's port, started without waiting for it."""
        env = self.child_env()
        env["API_PORT"] = str(self.api_port)
        env["API_HOST"] = self.settings.api_host  # a Host header the API answers for
        env["ALLOW_OPEN_BIND"] = "true" if self.settings.allow_open_bind else "false"
        self.api = ManagedProcess(
            "api",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"{self.settings.api_host}:{self.api_port}",
                "--workers",
                "1",
                "--threads",
                "8",
                "--timeout",
                "300",
                "--graceful-timeout",
                "10",
                "search_api.wsgi:app",
            ],
            self.log_dir / "api.log",
            env=env,
        )
        self.api.start()

    def api_answers(self) -> bool:
        """The API answers /health (any status: a part it needs may still be down)."""
        requests.get(self.api_url + "/health", timeout=5)
        return True

    def wait_healthy(self, timeout_s: float = 120.0) -> dict[str, object]:
        """Poll /health until every part is ready; raise with the last report otherwise."""
        deadline = time.monotonic() + timeout_s
        report: dict[str, object] = {}
        while time.monotonic() < deadline:
            response = requests.get(self.api_url + "/health", timeout=10)
            report = response.json()
            if response.status_code == 200:
                return report
            time.sleep(0.5)
        raise StartupError(f"the stack did not become healthy in {timeout_s:.0f} s: {report}")

    def processes(self) -> list[ManagedProcess]:
        procs: list[ManagedProcess] = []
        if self.redis:
            procs.append(self.redis.process)
        if self.object_store:
            procs.append(self.object_store.process)
        if isinstance(self.weaviate, WeaviateCluster):
            procs.extend(node.process for node in self.weaviate.nodes)
        elif self.weaviate:
            procs.append(self.weaviate.process)
        procs.extend(self.workers)
        if self.api:
            procs.append(self.api)
        return procs

    def stop(self) -> None:
        """The API and the workers first (a worker finishes its task, which needs Weaviate and Redis), then
        the servers; each group is stopped together, so Ctrl-C takes at most about two process timeouts,
        not one per process."""
        front = ([self.api] if self.api else []) + self.workers
        servers = [proc for proc in self.processes() if proc not in front]
        stop_all(front)
        self.workers.clear()
        stop_all(servers)
