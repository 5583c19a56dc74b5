"""The one settings object, read from environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

WEAVIATE_VERSION = "1.39.3"


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clipsearch"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the service. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", protected_namespaces=())

    # Where local state lives: Weaviate data, Redis data, blobs, thumbnails.
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "var")
    cache_dir: Path = Field(default_factory=_cache_home)

    # Weaviate. Unset WEAVIATE_URL means "start the managed local server".
    weaviate_url: str | None = None
    weaviate_grpc_port: int = 50051
    weaviate_api_key: str | None = None
    weaviate_binary: Path | None = None
    weaviate_version: str = WEAVIATE_VERSION

    # Redis. Unset REDIS_URL means "start the managed local redis-server".
    redis_url: str | None = None

    # HTTP API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Model.
    model_id: str = "ViT-B-32__openai"
    model_dir: Path | None = None
    model_precision: Literal["fp32", "int8"] = "fp32"
    # `clipsearch models quantize` refuses to write an int8 model whose image or text cosine to fp32 on the
    # bundled probe photos and prompts falls below this.
    int8_min_cosine: float = Field(default=0.999, ge=0.0, le=1.0)
    hf_endpoint: str | None = None
    onnx_threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))

    # Worker.
    worker_concurrency: int = 1
    # Redis re-delivers a task whose worker vanished once this many seconds have passed.
    task_visibility_timeout_s: int = 300
    ingest_chunk_size: int = 32
    # Bulk labelling: stored vectors scored per task (no ONNX, so far larger than an ingest chunk).
    label_chunk_size: int = 1000
    # Duplicates and edge lists compare every pair of a collection's vectors: at most this many images.
    similarity_max_images: int = 20_000

    # Ingest sources.
    folder_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    url_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)  # "host" or "host:port"
    url_max_bytes: int = 50 * 1024 * 1024
    url_timeout_s: float = 20.0
    url_max_redirects: int = 5
    zip_max_entries: int = 10_000
    zip_max_total_bytes: int = 4 * 1024 * 1024 * 1024
    zip_max_ratio: float = 100.0
    thumbnail_size: int = 256

    # Limits on input.
    max_image_pixels: int = 64_000_000
    max_upload_bytes: int = 512 * 1024 * 1024
    max_batch: int = 64
    max_search_limit: int = 1000
    health_timeout_s: float = 1.0

    # Observability: logs and metrics.
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    # Each worker serves its Prometheus metrics on this loopback port; unset: only through the API's
    # /metrics (which reads every worker's metric files when it shares DATA_DIR with them).
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"

    @field_validator("api_keys", "folder_roots", "url_allow", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        return _split_csv(value)

    @property
    def weaviate_binary_path(self) -> Path:
        if self.weaviate_binary is not None:
            return self.weaviate_binary
        return self.cache_dir / f"weaviate-v{self.weaviate_version}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def worker_metrics_root(self) -> Path:
        """Prometheus multiprocess files of the workers on this host, one directory per worker."""
        return self.data_dir / "metrics" / "workers"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"
