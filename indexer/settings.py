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

    # Object store of staged uploads and blobs (originals, thumbnails). Empty: the local directory DATA_DIR
    # (one machine). "s3://bucket/prefix": any S3-compatible store at BLOB_STORE_ENDPOINT (empty: AWS),
    # so that the API and workers on other machines share nothing but URLs (indexer/storage/objectstore.py).
    blob_store_url: str = ""
    blob_store_endpoint: str = ""
    blob_store_access_key: str = ""
    blob_store_secret_key: str = ""
    blob_store_region: str = "us-east-1"
    # Weaviate cluster (WEAVIATE_URL may list several nodes, comma-separated: the client fails over).
    # Replication factor of new image and reference collections; 0: min(nodes, 3).
    weaviate_replication_factor: int = Field(default=0, ge=0)
    weaviate_consistency: Literal["ONE", "QUORUM", "ALL"] = "QUORUM"
    # Vector compression of new image collections (indexer/store/schema.py; fixed once a collection
    # exists): none, rq8 (8-bit rotational quantization: 4x smaller, recall close to uncompressed),
    # rq1 (1-bit RQ: ~32x, lower recall), sq, bq or pq. benchmarks/recall.py --compression measures it.
    weaviate_vector_compression: Literal["none", "rq8", "rq1", "sq", "bq", "pq"] = "none"

    # Redis. Unset REDIS_URL means "start the managed local redis-server".
    redis_url: str | None = None

    # HTTP API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Host headers the API answers (besides localhost, 127.0.0.1, [::1] and API_HOST): "name" (any
    # port) or "name:port"; "*" turns the check off. Anything else is a 421 (DNS-rebinding guard).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Origins (scheme://host[:port]) besides the API's own that may send POST/PUT/PATCH/DELETE.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Start the API on a non-loopback address without API_KEYS only when this says so.
    allow_open_bind: bool = False

    # Model.
    model_id: str = "ViT-B-32__openai"
    model_dir: Path | None = None
    model_precision: Literal["fp32", "int8"] = "fp32"
    # `clipsearch models quantize` refuses to write an int8 model whose image or text cosine to fp32 on the
    # bundled probe photos and prompts falls below this.
    int8_min_cosine: float = Field(default=0.999, ge=0.0, le=1.0)
    hf_endpoint: str | None = None
    onnx_threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1))
    # Batches a worker runs through the image session at once, each on ONNX_THREADS / lanes threads of
    # one shared session (weights once). 0 = auto: 2 on CPU with ONNX_THREADS >= 2, else 1 (CUDA).
    # One batch on all threads stalls whenever preprocessing takes a core from one of its threads (each
    # operator waits for its slowest thread); lanes of fewer threads do not. Measured on 2 cores,
    # ViT-B/32: raw session 2 lanes x 1 thread 61 img/s int8, 22 fp32, against 1 x 2 threads 48-56, 19.5-21.
    inference_lanes: int = Field(default=0, ge=0, le=64)

    # Worker.
    worker_concurrency: int = 1
    # The raw bytes of one chunk's items in flight (read, not yet stored or failed): the read stage waits
    # while they are spent (issue 23: per-item caps multiply). One item larger than this still runs, alone.
    ingest_max_bytes_in_flight: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    # Redis re-delivers a task whose worker vanished once this many seconds have passed.
    # (raised at start-up above the hard time limit of the largest ingest task, so that a task still
    # running is never handed to a second worker).
    task_visibility_timeout_s: int = 300
    # Items per ingest task. A task runs its items as a pipeline of encoder batches (read, decode,
    # infer and store overlap), so larger tasks keep the session busy longer between task boundaries.
    ingest_chunk_size: int = 128
    # Per-task time limits, scaled with the task's size: soft = base + per_item * items (the task fails
    # its open items with the reason), hard = soft + max(10 s, soft / 4) (the pool process is killed).
    task_time_limit_base_s: float = Field(default=60.0, gt=0)
    task_time_limit_per_item_s: float = Field(default=10.0, gt=0)
    # A chunk whose worker process died this many times (out of memory, a crash in a decoder) is split
    # into one task per item; an item whose task dies this many times is failed with that reason.
    ingest_max_crashes: int = Field(default=2, ge=1)
    # TEST ONLY, empty (off) by default: a worker process that reads bytes with this sha256 kills itself
    # with SIGKILL, as an out-of-memory kill would (tests/integration/test_ingest_pipeline.py).
    test_crash_sha256: str = ""
    # Bulk labelling: stored vectors scored per task (no ONNX, so far larger than an ingest chunk).
    label_chunk_size: int = 1000
    # Duplicates and edge lists (indexer/search/similarity.py): exact numpy over every pair up to
    # SIMILARITY_EXACT_MAX_IMAGES images; above, one nearest-neighbour query per image through Weaviate
    # (SIMILARITY_NEIGHBOURS per image, SIMILARITY_QUERY_CONCURRENCY in flight); refused above
    # SIMILARITY_MAX_IMAGES.
    similarity_max_images: int = Field(default=2_000_000, ge=1)
    # 100k on 2 cores (benchmarks/similarity.py): exact 125 s, +535 MB; neighbours 394 s, +18 MB.
    # Exact grows with n^2 (1M: hours, 2.5 GB), the neighbour path with about n log n and no memory.
    similarity_exact_max_images: int = Field(default=100_000, ge=0)
    # Weaviate's query ef grows with the limit (8 x limit, at least 100): 10 neighbours cost a third of 50.
    similarity_neighbours: int = Field(default=10, ge=1, le=1000)
    similarity_query_concurrency: int = Field(default=4, ge=1, le=64)

    # Ingest sources.
    folder_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    url_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)  # "host" or "host:port"
    url_max_bytes: int = 50 * 1024 * 1024
    # One wall-clock deadline per download (DNS, connect, headers, body, every redirect); in /embed/image
    # and /compare, for all the URLs of one request together.
    url_timeout_s: float = 20.0
    url_max_redirects: int = 5
    url_max_length: int = 2048
    # Zip caps: the entry count (directories included) and the central directory's size are read from
    # the end-of-central-directory record and refused before the directory is parsed.
    zip_max_entries: int = 10_000
    zip_max_directory_bytes: int = 4 * 1024 * 1024
    zip_max_total_bytes: int = 4 * 1024 * 1024 * 1024
    zip_max_entry_bytes: int = 256 * 1024 * 1024
    zip_max_ratio: float = 100.0
    # Files (and refused links) that one server-side folder may yield.
    folder_max_files: int = 100_000
    thumbnail_size: int = 256

    # Limits on input.
    max_image_pixels: int = 64_000_000
    max_upload_bytes: int = 512 * 1024 * 1024
    # The web page's folder upload (issue 16): files per request (each request also stays under
    # max_upload_bytes), requests in flight at once, and sha256 values per "already stored?" lookup.
    upload_max_files_per_request: int = Field(default=100, ge=1, le=5000)
    upload_parallel_requests: int = Field(default=3, ge=1, le=16)
    upload_max_hash_lookup: int = Field(default=1000, ge=1, le=10_000)
    # Open upload jobs (the page's folder upload, issue 23): at most MAX_OPEN_JOBS open at once (429 past
    # it); one that has taken no file for OPEN_JOB_IDLE_S and has no item waiting is ended as failed and
    # its staged files removed, by a sweep every OPEN_JOB_SWEEP_S in the workers (one at a time).
    max_open_jobs: int = Field(default=100, ge=1, le=100_000)
    open_job_idle_s: float = Field(default=3600.0, gt=0)
    open_job_sweep_s: float = Field(default=60.0, gt=0)
    max_batch: int = 64
    # JSON request bodies (issue 23): refused (413) past MAX_JSON_BYTES before they are parsed, by
    # Content-Length or while streamed; the routes that carry base64 images or raw vectors (/embed/image,
    # /compare, class embeddings) take up to MAX_JSON_LARGE_BYTES (use multipart for more). Nesting
    # deeper than 32 levels, or more than 100,000 objects and arrays, is a 400 before parsing.
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_json_large_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_search_limit: int = 1000

    # Decoding untrusted bytes (issue 23; indexer/media/pool.py). "process": every decode of bytes from
    # outside (searches by image, /embed/image, /compare, class examples, ingest) runs in a pool of
    # DECODE_POOL_SIZE processes (0: min(4, CPUs), started on demand) per API or worker process, each
    # decode under DECODE_MAX_CPU_S of CPU time and DECODE_MAX_MEMORY_MB of address space on top of the
    # decoder's own; a decode past either (or a decoder crash) fails that image alone (422, or the
    # item's reason) and its process is replaced. "inline": decode in the calling thread, no limits
    # (benchmarks/decode_limits.py compares the two).
    decode_isolation: Literal["process", "inline"] = "process"
    decode_pool_size: int = Field(default=0, ge=0, le=64)
    decode_max_cpu_s: float = Field(default=10.0, gt=0)
    decode_max_memory_mb: int = Field(default=2048, ge=64)
    # Progressive JPEG scan bombs: at most JPEG_MAX_SCANS scans (libjpeg-turbo's own limit), and scans x
    # pixels at most JPEG_MAX_SCAN_PIXELS (100 scans of a 64 MP image: about 0.5 s of CPU), refused
    # from the markers before any decode.
    jpeg_max_scans: int = Field(default=500, ge=1)
    jpeg_max_scan_pixels: int = Field(default=100 * 64_000_000, ge=1)

    # Outages, amplification caps and retention (issue 10).
    # Retry-After (seconds) of the 503 answered while Redis, the broker or Weaviate is unreachable.
    dependency_retry_after_s: int = Field(default=5, ge=1)
    # sort_by orders the best this-many matches (after min_score) by the field; offset + limit must fit.
    search_sort_window: int = Field(default=1000, ge=1, le=10_000)
    # Weighted text search: at most this many `positive` and this many `negative` queries.
    search_max_queries: int = Field(default=16, ge=1)
    # /classifiers/<c>/apply on a collection: offset + limit at most this, and at most
    # classify_apply_max_candidates hits fetched over all the classifier's references.
    classify_apply_max_window: int = Field(default=1000, ge=1, le=10_000)
    classify_apply_max_candidates: int = Field(default=100_000, ge=1)
    # Tags and metadata stored on each image.
    max_tags: int = 100
    max_tag_length: int = 128
    max_metadata_keys: int = 64
    max_metadata_key_length: int = 128
    max_metadata_value_length: int = 2048
    max_metadata_bytes: int = 16 * 1024
    # A worker re-runs a chunk (idempotent) in place for up to this long while Redis or Weaviate is away,
    # before it hands the chunk to Celery's retry (which itself needs Redis to publish).
    task_outage_retry_s: float = Field(default=60.0, ge=0)
    # A finished job's Redis records (report, items, outcomes, errors) expire this long after it ends.
    job_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    # No job hangs (indexer/services/recovery.py): every JOB_SWEEP_INTERVAL_S one worker (elected by a
    # Redis lock) looks for queued or running jobs without progress for JOB_STALL_S while the queue is
    # empty, and enqueues their items without an outcome again; after JOB_MAX_SWEEPS such re-runs in a
    # row without progress the job ends `failed` with the reason. So a lost chunk runs again at most
    # JOB_STALL_S + JOB_SWEEP_INTERVAL_S after the job's last progress, once the queue has drained.
    job_sweep_interval_s: float = Field(default=15.0, gt=0)
    job_stall_s: float = Field(default=120.0, gt=0)
    job_max_sweeps: int = Field(default=3, ge=1)
    # A chunk that meets a vector store without quorum pauses its job (the reason shows in GET /jobs/<id>)
    # and is enqueued again this many seconds later, without counting against its retries.
    job_pause_retry_s: float = Field(default=5.0, gt=0)
    # Each worker writes a heartbeat to Redis this often; /health counts the workers whose heartbeat is
    # younger than 3 intervals (a SIGKILLed worker drops out within that).
    worker_heartbeat_s: float = Field(default=2.0, gt=0)

    # `clipsearch up`'s supervisor (clipsearch/supervisor.py): a part that dies is restarted on the same
    # ports and data after SUPERVISOR_BACKOFF_S, doubled with each death inside the window, at most
    # SUPERVISOR_BACKOFF_MAX_S; one that died more than SUPERVISOR_MAX_RESTARTS times within
    # SUPERVISOR_RESTART_WINDOW_S is given up (left down, the stack reported degraded in /health).
    supervisor_backoff_s: float = Field(default=1.0, gt=0)
    supervisor_backoff_max_s: float = Field(default=30.0, gt=0)
    supervisor_max_restarts: int = Field(default=5, ge=0)
    supervisor_restart_window_s: float = Field(default=300.0, gt=0)
    # Backups (indexer/backup/): where `backup create` writes and `backup restore` reads by default, a
    # directory or s3://bucket/prefix; empty: DATA_DIR/backups (put it on another disk). A directory must
    # be the same path for Weaviate (its backup-filesystem module writes the vectors there) and the API.
    backup_url: str = ""
    # Further targets (directories or s3:// prefixes) that `--to` / `--from` may name, besides BACKUP_URL;
    # a request naming anything else (or outside them) is refused.
    backup_targets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long Weaviate's part of one backup or restore may take before it fails.
    backup_timeout_s: float = Field(default=3600.0, gt=0)

    # Observability: logs and metrics.
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    # Each worker serves its Prometheus metrics on this loopback port; unset: only through the API's
    # /metrics (which reads every worker's metric files when it shares DATA_DIR with them).
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"

    @field_validator(
        "api_keys",
        "folder_roots",
        "url_allow",
        "allowed_hosts",
        "allowed_origins",
        "backup_targets",
        mode="before",
    )
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
