"""A small HTTP client for the running service, used by `clipsearch index`, `search` and `up --demo`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from indexer.errors import ClipsearchError

UPLOAD_BATCH = 64


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, self.base + path, timeout=300, **kwargs)
        except requests.ConnectionError as exc:
            raise ClipsearchError(
                f"cannot reach clipsearch at {self.base}: is `clipsearch up` running?"
            ) from exc
        if response.status_code not in expect:
            try:
                error = response.json()["error"]
                message = f"{error['message']} ({response.status_code})"
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            raise ClipsearchError(message)
        return response.json() if response.content else None

    def ensure_collection(self, name: str) -> None:
        existing = {c["name"] for c in self.call("GET", "/collections")["collections"]}
        if name not in existing:
            self.call("POST", "/collections", expect=(201,), json={"name": name})

    def upload_paths(
        self, collection: str, root: Path, paths: list[Path], tags: str = ""
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Upload in batches, named relative to `root`.

        Returns the job ids, and the files of batches refused whole (nothing usable in them): the files
        refused inside an accepted batch are among that job's errors.
        """
        jobs: list[str] = []
        refused: list[dict[str, str]] = []
        for start in range(0, len(paths), UPLOAD_BATCH):
            batch = paths[start : start + UPLOAD_BATCH]
            files = [("files", (str(p.relative_to(root)), p.read_bytes())) for p in batch]
            body = self.call(
                "POST",
                f"/collections/{collection}/images",
                expect=(202, 400),
                files=files,
                data={"tags": tags},
            )
            if "error" in body:
                refused.extend(body["error"].get("details", {}).get("rejected", []))
                continue
            jobs.append(body["job_id"])
        return jobs, refused

    def follow(self, job_ids: list[str], total: int, show: bool = True) -> list[dict[str, Any]]:
        """Poll the jobs with a progress bar (images/s and ETA) until all are finished."""
        with tqdm(total=total, unit="img", disable=not show, dynamic_ncols=True) as bar:
            while True:
                reports = [self.call("GET", f"/jobs/{job}") for job in job_ids]
                bar.n = sum(r["processed"] for r in reports)
                bar.refresh()
                if all(r["state"] in {"completed", "failed", "cancelled"} for r in reports):
                    return reports
                time.sleep(0.5)


def image_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path
