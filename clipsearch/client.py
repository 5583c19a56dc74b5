"""A small HTTP client for the running service, used by `clipsearch index`, `search` and `up --demo`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential
from tqdm import tqdm

from indexer.errors import ClipsearchError
from indexer.services.jobs import FINAL_STATES

MULTIPART_MARGIN = 64 * 1024  # the form fields and closing boundary of an upload request
PART_OVERHEAD = 1024  # one file part's boundary and headers, filename included


RETRY_POST_STATUSES = (502, 503, 504)
MAX_BACKOFF_S = 10.0


class _Transient(Exception):
    """A failure worth retrying: no connection, or a 5xx."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _message(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['message']} ({response.status_code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


_backoff = wait_exponential(multiplier=0.5, max=MAX_BACKOFF_S)


def _wait_for_retry(state: RetryCallState) -> float:
    """Exponential backoff (0.5 s doubling, at most 10 s); a Retry-After the server sent wins, capped."""
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    if isinstance(exc, _Transient) and exc.retry_after_s is not None:
        return min(max(exc.retry_after_s, 0.0), MAX_BACKOFF_S)
    return float(_backoff(state))


ENDED_STATES = frozenset(state.value for state in FINAL_STATES)
FAILURES_PAGE = 1000  # failed items read per request once a job has ended (the server's largest page)
FOLLOW_WAIT_S = 0.5  # a progress round: how long `follow` waits on a job before reading progress again

FIRST_CONTACT_S = 5.0  # how long a first request retries a server that is not there


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None = None, retry_for_s: float = 120.0) -> None:
        self.base = base_url.rstrip("/")
        self.retry_for_s = retry_for_s
        self._reached = False  # until the server has answered once, a refused connection fails fast
        self.session = requests.Session()
        self.session.trust_env = False
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """One API call; transient failures (no connection, 5xx, a 503 for a dependency outage) are
        retried with backoff, honouring Retry-After, for up to `retry_for_s` seconds; before the server has
        answered once (a wrong URL, nothing started), for FIRST_CONTACT_S only."""

        def budget() -> float:
            return self.retry_for_s if self._reached else min(self.retry_for_s, FIRST_CONTACT_S)

        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(_Transient),
                wait=_wait_for_retry,
                stop=lambda state: (state.seconds_since_start or 0.0) >= budget(),
                reraise=True,
            ):
                with attempt:
                    response = self._send(method, path, **kwargs)
        except _Transient as exc:
            raise ClipsearchError(f"{exc} (gave up after {budget():.0f} s of retries)") from exc
        if response.status_code not in expect:
            raise ClipsearchError(_message(response))
        return response.json() if response.content else None

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.base + path, timeout=300, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Transient(f"cannot reach clipsearch at {self.base}: is `clipsearch up` running?") from exc
        self._reached = True  # the server is there: from now on ride out its outages
        # A POST is retried only when the server said it did nothing (its dependency or gateway was down);
        # reads and deletes are safe to repeat on any 5xx.
        transient = RETRY_POST_STATUSES if method.upper() == "POST" else range(500, 600)
        if response.status_code in transient:
            raise _Transient(_message(response), _retry_after(response))
        return response

    def ensure_collection(self, name: str) -> None:
        existing = {c["name"] for c in self.call("GET", "/collections")["collections"]}
        if name not in existing:
            self.call("POST", "/collections", expect=(201,), json={"name": name})

    def upload_paths(
        self, collection: str, root: Path, paths: list[Path], tags: str = ""
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Upload in batches, named relative to `root`: as many files per request as the server puts in
        one worker task (INGEST_CHUNK_SIZE, from /uploads/limits), so that every task but the last is a
        full chunk, and never more bytes than MAX_UPLOAD_BYTES allows.

        Returns the job ids, and the files of batches refused whole (nothing usable in them): the files
        refused inside an accepted batch are among that job's errors.
        """
        jobs: list[str] = []
        refused: list[dict[str, str]] = []
        limits = self.call("GET", "/uploads/limits")
        for batch in pack(paths, int(limits["chunk_size"]), int(limits["max_request_bytes"])):
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
        """Follow the jobs with a progress bar (images/s and ETA) until all are finished. Each round waits
        on the first unfinished job for up to FOLLOW_WAIT_S (the server answers as soon as it ends), then
        reads the others' progress."""
        reports: dict[str, dict[str, Any]] = {}
        with tqdm(total=total, unit="img", disable=not show, dynamic_ncols=True) as bar:
            while pending := [j for j in job_ids if reports.get(j, {}).get("state") not in ENDED_STATES]:
                started = time.monotonic()
                for i, job in enumerate(pending):
                    wait = {"wait": FOLLOW_WAIT_S} if i == 0 else {}
                    reports[job] = self.call("GET", f"/jobs/{job}", params=wait)
                bar.n = sum(r["processed"] for r in reports.values())
                bar.refresh()
                if reports[pending[0]]["state"] not in ENDED_STATES:  # the server may answer without waiting
                    time.sleep(max(0.0, FOLLOW_WAIT_S - (time.monotonic() - started)))
        return [self.all_failures(reports[j]) for j in job_ids]

    def all_failures(self, report: dict[str, Any]) -> dict[str, Any]:
        """The report with every failed item in `errors`: the server lists them a page at a time
        (`failures_offset`, `errors_next_offset`)."""
        errors = list(report.get("errors", []))
        offset = report.get("errors_next_offset")
        while offset is not None:
            params = {"failures_offset": offset, "failures_limit": FAILURES_PAGE}
            page = self.call("GET", f"/jobs/{report['id']}", params=params)
            errors.extend(page["errors"])
            offset = page.get("errors_next_offset") if page["errors"] else None
        return {**report, "errors": errors}


def pack(paths: list[Path], max_files: int, max_bytes: int) -> Iterator[list[Path]]:
    """Consecutive batches of at most `max_files` files whose sizes add up to at most `max_bytes` less a
    margin for the multipart framing; a file larger than that goes alone (the server then says why)."""
    budget = max(1, max_bytes - MULTIPART_MARGIN)
    batch: list[Path] = []
    size = 0
    for path in paths:
        length = path.stat().st_size + PART_OVERHEAD
        if batch and (len(batch) >= max_files or size + length > budget):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch


def image_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path
