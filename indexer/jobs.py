"""Job records in Redis: the plan (one entry per input item), progress counters and per-file errors.

Every item's outcome is recorded once (HSETNX), and the counters move only when an outcome is new, so a
chunk that a second worker re-runs after a crash cannot count an image twice. The last outcome of a job
flips it to `completed` in the same atomic script.
"""

from __future__ import annotations

import json
import time
import uuid
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from indexer.errors import Conflict, NotFound

PREFIX = "clipsearch:job:"
REEMBED = "reembed"  # the job kind that moves a collection's images to another model
INDEX = "clipsearch:jobs"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


class Outcome(StrEnum):
    INDEXED = "indexed"
    DUPLICATE = "duplicate"
    FAILED = "failed"


class FileError(BaseModel):
    file: str
    reason: str


class JobReport(BaseModel):
    id: str
    kind: str
    collection: str
    state: JobState
    total: int
    done: int = Field(description="items indexed")
    failed: int
    duplicates: int
    processed: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    request_id: str | None = None
    errors: list[FileError] = Field(default_factory=list)


# KEYS: job hash, outcome hash, errors hash. ARGV: item index, outcome, error JSON or "", now.
_RECORD = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[3]) end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local seen = redis.call('HLEN', KEYS[2])
local state = redis.call('HGET', KEYS[1], 'state')
if seen >= total and (state == 'running' or state == 'queued') then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', ARGV[4])
end
return 1
"""


def _text(value: object) -> str:
    """A Redis reply as str (the client returns bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def new_job_id() -> str:
    return uuid.uuid4().hex


def chunks(total: int, size: int) -> list[tuple[int, int]]:
    """[start, end) ranges that split `total` items into tasks of `size`."""
    return [(start, min(start + size, total)) for start in range(0, total, size)]


class JobStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._record = client.register_script(_RECORD)

    @staticmethod
    def _key(job_id: str, part: str = "") -> str:
        return f"{PREFIX}{job_id}{':' + part if part else ''}"

    def create(
        self,
        kind: str,
        collection: str,
        items: list[dict[str, Any]],
        *,
        options: dict[str, Any] | None = None,
        request_id: str | None = None,
        job_id: str | None = None,
    ) -> str:
        job_id = job_id or new_job_id()
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.hset(
            self._key(job_id),
            mapping={
                "id": job_id,
                "kind": kind,
                "collection": collection,
                "state": JobState.QUEUED.value,
                "total": len(items),
                Outcome.INDEXED.value: 0,
                Outcome.FAILED.value: 0,
                Outcome.DUPLICATE.value: 0,
                "created_at": now,
                "request_id": request_id or "",
                "options": json.dumps(options or {}),
            },
        )
        if items:
            pipe.rpush(self._key(job_id, "items"), *[json.dumps(item) for item in items])
        pipe.zadd(INDEX, {job_id: now})
        pipe.execute()
        if not items:
            self.redis.hset(
                self._key(job_id), mapping={"state": JobState.COMPLETED.value, "finished_at": now}
            )
        return job_id

    def options(self, job_id: str) -> dict[str, Any]:
        raw = self.redis.hget(self._key(job_id), "options")
        if raw is None:
            raise NotFound(f"unknown job {job_id!r}")
        loaded: dict[str, Any] = json.loads(raw)
        return loaded

    def items(self, job_id: str, start: int, end: int) -> list[dict[str, Any]]:
        raw = self.redis.lrange(self._key(job_id, "items"), start, end - 1)
        return [json.loads(entry) for entry in raw]

    def recorded(self, job_id: str, indexes: list[int]) -> dict[int, str]:
        """Outcomes already recorded for these items (a redelivered chunk skips them)."""
        if not indexes:
            return {}
        values = self.redis.hmget(self._key(job_id, "outcome"), [str(i) for i in indexes])
        return {i: _text(v) for i, v in zip(indexes, values, strict=True) if v is not None}

    def claim_content(self, job_id: str, sha256: str, index: int) -> int:
        """The first item of this job with these bytes: later ones are duplicates within the job."""
        key = self._key(job_id, "sha")
        self.redis.hsetnx(key, sha256, index)
        owner = self.redis.hget(key, sha256)
        return int(owner) if owner is not None else index

    def record(self, job_id: str, index: int, outcome: Outcome, file: str = "", reason: str = "") -> bool:
        error = json.dumps({"file": file, "reason": reason}) if outcome is Outcome.FAILED else ""
        keys = [self._key(job_id), self._key(job_id, "outcome"), self._key(job_id, "errors")]
        return bool(self._record(keys=keys, args=[index, outcome.value, error, time.time()]))

    def mark_running(self, job_id: str) -> None:
        key = self._key(job_id)
        self.redis.hsetnx(key, "started_at", time.time())
        # Only a queued job starts running; a cancelled or finished one stays as it is.
        self.redis.eval(
            "if redis.call('HGET', KEYS[1], 'state') == 'queued' then "
            "redis.call('HSET', KEYS[1], 'state', 'running') end",
            1,
            key,
        )

    def state(self, job_id: str) -> JobState:
        value = self.redis.hget(self._key(job_id), "state")
        if value is None:
            raise NotFound(f"unknown job {job_id!r}")
        return JobState(_text(value))

    def cancel(self, job_id: str) -> JobReport:
        state = self.state(job_id)
        if state in FINAL_STATES:
            raise Conflict(f"job {job_id} is already {state.value}")
        self.redis.hset(
            self._key(job_id), mapping={"state": JobState.CANCELLED.value, "finished_at": time.time()}
        )
        return self.get(job_id)

    def fail(self, job_id: str, reason: str) -> None:
        self.redis.hset(
            self._key(job_id),
            mapping={"state": JobState.FAILED.value, "finished_at": time.time(), "failure": reason},
        )

    def get(self, job_id: str, *, with_errors: bool = True) -> JobReport:
        raw = self.redis.hgetall(self._key(job_id))
        if not raw:
            raise NotFound(f"unknown job {job_id!r}")
        fields = {_text(k): _text(v) for k, v in raw.items()}
        indexed = int(fields[Outcome.INDEXED.value])
        failed = int(fields[Outcome.FAILED.value])
        duplicates = int(fields[Outcome.DUPLICATE.value])
        total = int(fields["total"])
        processed = indexed + failed + duplicates
        started = float(fields["started_at"]) if fields.get("started_at") else None
        finished = float(fields["finished_at"]) if fields.get("finished_at") else None
        rate = eta = None
        if started is not None and processed:
            elapsed = max((finished or time.time()) - started, 1e-6)
            rate = processed / elapsed
            eta = 0.0 if finished else (total - processed) / rate
        errors: list[FileError] = []
        if with_errors:
            entries = self.redis.hgetall(self._key(job_id, "errors"))
            ordered = sorted(entries.items(), key=lambda kv: int(kv[0]))
            errors = [FileError.model_validate_json(value) for _, value in ordered]
        return JobReport(
            id=job_id,
            kind=fields["kind"],
            collection=fields["collection"],
            state=JobState(fields["state"]),
            total=total,
            done=indexed,
            failed=failed,
            duplicates=duplicates,
            processed=processed,
            created_at=float(fields["created_at"]),
            started_at=started,
            finished_at=finished,
            images_per_s=round(rate, 2) if rate is not None else None,
            eta_s=round(eta, 1) if eta is not None else None,
            request_id=fields.get("request_id") or None,
            errors=errors,
        )

    def list(self, limit: int = 100, offset: int = 0) -> list[JobReport]:
        ids = self.redis.zrevrange(INDEX, offset, offset + limit - 1)
        reports = []
        for raw_id in ids:
            try:
                reports.append(self.get(_text(raw_id), with_errors=False))
            except NotFound:
                self.redis.zrem(INDEX, _text(raw_id))
        return reports

    def count_by_state(self) -> dict[str, int]:
        counts = {state.value: 0 for state in JobState}
        for raw_id in self.redis.zrange(INDEX, 0, -1):
            value = self.redis.hget(self._key(_text(raw_id)), "state")
            if value is not None:
                counts[_text(value)] += 1
        return counts
