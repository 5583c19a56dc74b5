"""What `clipsearch index DIR` starts: the folder registered when the service reads it itself, else
its files uploaded. Shared by the command and benchmarks/ingest.py, so the benchmark times the same."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.client import ApiClient
from clipsearch.local_folder import register_folder, served_folder


@dataclass
class Started:
    jobs: list[str]
    accepted: int  # the files the jobs will report on
    refused: list[dict[str, str]] = field(default_factory=list)  # files refused before any job
    registered: Path | None = None  # the folder the service reads itself, when it was registered


def start_index(
    api: ApiClient, collection: str, root: Path, paths: list[Path], tags: str = "", upload: bool = False
) -> Started:
    """Register `root` if the service reads the same folder (and `upload` is not forced), else upload
    `paths`, named relative to `root`."""
    served = None if upload else served_folder(api, root, paths)
    if served is not None:
        jobs, accepted, refused = register_folder(api, collection, served, tags=tags)
        return Started(jobs, accepted, refused, registered=served)
    jobs, refused = api.upload_paths(collection, root, paths, tags=tags)
    return Started(jobs, len(paths) - len(refused), refused)  # refused batches never became jobs
