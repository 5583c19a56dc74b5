"""The managed local S3-compatible object store: rclone's `serve s3` (MIT) over a directory, on loopback.

scripts/build_object_store.sh builds it from the Go module proxy (only the local backend and the s3
server) and caches it beside Weaviate. Every `clipsearch up` generates fresh credentials (a restart by
the supervisor, `relaunch`, keeps them); the stack hands them to its children through their environment
(BLOB_STORE_*), never on a command line other users can read (rclone reads them from RCLONE_AUTH_KEY).
Buckets are directories under its data directory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import requests

from clipsearch.processes import LOOPBACK, ManagedProcess, ensure_port_free, ensure_writable_dir, free_port
from indexer.errors import StartupError
from indexer.settings import Settings
from indexer.storage.objectstore import S3ObjectStore

RCLONE_VERSION = "1.76.0"
BUCKET = "clipsearch"


def object_store_binary(settings: Settings) -> Path:
    return settings.cache_dir / f"rclone-s3-v{RCLONE_VERSION}"


class ObjectStoreServer:
    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, port: int | None = None) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = port or free_port()
        # rclone's s3 server refuses very short keys; these are long and fresh on every start
        self.access_key = "clipsearch-" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(24)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        # the flag repeats, so its variable is CSV: one quoted "access,secret" field is one pair
        env["RCLONE_AUTH_KEY"] = f'"{self.access_key},{self.secret_key}"'
        self.process = ManagedProcess(
            "object-store",
            [
                str(binary),
                "serve",
                "s3",
                "--config",
                str(data_dir / "rclone.conf"),  # never read the user's rclone remotes
                "--addr",
                f"{LOOPBACK}:{self.port}",
                "--log-level",
                "NOTICE",
                str(data_dir / "buckets"),
            ],
            log_dir / "object-store.log",
            env=env,
        )

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"s3://{BUCKET}/clipsearch"

    def env(self) -> dict[str, str]:
        """The settings that point a process of the stack at this store."""
        return {
            "BLOB_STORE_URL": self.url,
            "BLOB_STORE_ENDPOINT": self.endpoint,
            "BLOB_STORE_ACCESS_KEY": self.access_key,
            "BLOB_STORE_SECRET_KEY": self.secret_key,
        }

    def weaviate_backup_env(self) -> dict[str, str]:
        """What Weaviate's backup-s3 module needs to write backups into this store (indexer/backup/)."""
        return {
            "BACKUP_S3_BUCKET": BUCKET,
            "BACKUP_S3_ENDPOINT": f"{LOOPBACK}:{self.port}",  # host:port, no scheme (minio-go)
            "BACKUP_S3_USE_SSL": "false",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(
            update={
                "blob_store_url": self.url,
                "blob_store_endpoint": self.endpoint,
                "blob_store_access_key": self.access_key,
                "blob_store_secret_key": self.secret_key,
            }
        )

    def start(self, timeout_s: float = 30.0) -> None:
        if not self.binary.is_file():
            raise StartupError(
                f"object store binary not found at {self.binary}; run scripts/build_object_store.sh",
                {"path": str(self.binary)},
            )
        ensure_writable_dir(self.data_dir / "buckets", "the object store")
        ensure_port_free(self.port, "the object store")
        self.process.start()
        store = S3ObjectStore.from_settings(self.settings(Settings()))

        def ready() -> bool:
            store.ensure_bucket()
            store.check()
            return True

        self.process.wait_ready(ready, timeout_s)

    def ready(self) -> bool:
        """It answers HTTP on its port (any status: a request without credentials is refused)."""
        requests.get(self.endpoint, timeout=1)
        return True

    def relaunch(self) -> None:
        """Start it again after it died, without waiting: the same port, credentials and buckets."""
        ensure_writable_dir(self.data_dir / "buckets", "the object store")
        self.process.start()

    def stop(self) -> None:
        self.process.stop()
