"""Job records in Redis: the plan (one entry per input item), progress counters and per-file errors.

Every item's outcome is recorded once (HSETNX), and the counters move only when an outcome is new, so a
chunk that a second worker re-runs after a crash cannot count an image twice. The last outcome of a job
flips it to `completed` in the same atomic script.

Every move to a final state (completed, failed, cancelled) gives all the job's keys a TTL (JOB_TTL_S,
a week by default) and updates the per-state counters that `count_by_state` reads in O(1).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from indexer.errors import Conflict, NotFound

PREFIX = "clipsearch:job:"
REEMBED = "reembed"  # the job kind that moves a collection's images to another model
# Kinds whose job ends with a step of its own once every item has an outcome (a re-embed switches its
# collection to the new model): their last outcome does not complete them, the worker that runs that step
# does (indexer.pipeline.runner._finish), so that `completed` is never reported before the step is done.
FINAL_STEP_KINDS = frozenset({REEMBED})
HELD_FOR_STEP = "step"  # the `open` field of such a job until its step closes it ("1": an open upload)
INDEX = "clipsearch:jobs"
# Jobs by state, kept as the states change, so that a metrics scrape costs a few commands, not one per
# job: a hash of the queued and running counts, and one sorted set per final state (job id by finish
# time) whose entries older than the TTL are pruned as jobs finish.
ACTIVE = "clipsearch:jobs:active"
ENDED = "clipsearch:jobs:ended:"
# The hash keys of the jobs not yet in a final state (queued or running): what the sweeper walks
# (indexer/jobs/sweep.py). A job joins it when created and leaves it in the script that ends it.
OPEN_JOBS = "clipsearch:jobs:open"
PARTS = ("", "items", "outcome", "errors", "sha")  # every Redis key of a job: PREFIX + id [+ ":" + part]
DEFAULT_TTL_S = 7 * 24 * 3600  # Settings.job_ttl_s
PRUNE_BATCH = 100
MAX_ITEM_NAME = 8192  # indexer.sources.plan.MAX_ITEM_TEXT: the longest name an outcome is reported under


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


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One item's outcome, as `JobStore.record_many` takes them."""

    index: int
    outcome: Outcome
    file: str = ""
    reason: str = ""


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
    failure: str | None = Field(
        default=None, description="why the job failed as a whole (state `failed`), e.g. a model mismatch"
    )
    paused: str | None = Field(
        default=None,
        description="why a running job is waiting and makes no progress now (e.g. `vector store has no "
        "quorum: ...`); it resumes by itself once the cause is gone",
    )
    errors: list[FileError] = Field(default_factory=list)


# Shared Lua: move a job to a final state (ARGV: state, now, ttl) and give every key of the job a TTL.
# KEYS[1..5] are the job's keys (PARTS: KEYS[1] the job hash), KEYS[6] the ACTIVE hash, KEYS[7] INDEX;
# the sorted set of a final state is ENDED .. state.
_FINISH_LUA = """
local function finish(keys, state, now, ttl, prefix, ended)
  local old = redis.call('HGET', keys[1], 'state')
  if old == state then return end
  if old == 'queued' or old == 'running' then
    redis.call('HINCRBY', keys[6], old, -1)
  elseif old then
    redis.call('ZREM', ended .. old, keys[1])
  end
  redis.call('HSET', keys[1], 'state', state, 'finished_at', now)
  redis.call('SREM', '{open_jobs}', keys[1])
  local set = ended .. state
  redis.call('ZADD', set, now, keys[1])
  redis.call('ZREMRANGEBYSCORE', set, '-inf', '(' .. (tonumber(now) - tonumber(ttl)))
  for i = 1, 5 do redis.call('EXPIRE', keys[i], ttl) end
  -- the index of jobs by creation time: drop a few entries whose records are gone
  local cut = tonumber(now) - tonumber(ttl)
  local old_ids = redis.call('ZRANGEBYSCORE', keys[7], '-inf', cut, 'LIMIT', 0, {batch})
  for _, id in ipairs(old_ids) do
    if redis.call('EXISTS', prefix .. id) == 0 then redis.call('ZREM', keys[7], id) end
  end
end
""".replace("{batch}", str(PRUNE_BATCH)).replace("{open_jobs}", OPEN_JOBS)

# KEYS: as _FINISH_LUA. ARGV: item index, outcome, error JSON or "", now, ttl, PREFIX, ENDED.
_RECORD = (
    _FINISH_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
-- progress: what the sweeper measures a stall by; a job that records outcomes is no longer paused
redis.call('HSET', KEYS[1], 'progress_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'paused', 'paused_until')
if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], ARGV[1], ARGV[3]) end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local seen = redis.call('HLEN', KEYS[3])
local state = redis.call('HGET', KEYS[1], 'state')
-- an open upload job (JobStore.create(open_ended=True)) and a job held for its final step (FINAL_STEP_KINDS)
-- complete only once they are closed
local flag = redis.call('HGET', KEYS[1], 'open')
local open = flag == '1' or flag == '{held}'
if seen >= total and not open and (state == 'running' or state == 'queued') then
  finish(KEYS, 'completed', ARGV[4], ARGV[5], ARGV[6], ARGV[7])
elseif state ~= 'running' and state ~= 'queued' then
  -- an outcome recorded after the job ended (a late chunk): its keys keep the TTL
  for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
end
return 1
"""
).replace("{held}", HELD_FOR_STEP)

# KEYS: as _FINISH_LUA. ARGV: state, now, ttl, PREFIX, ENDED, failure reason, only_if_active ("1"/"0").
# Returns the state before the call.
_END = (
    _FINISH_LUA
    + """
local old = redis.call('HGET', KEYS[1], 'state')
if not old then return false end
if ARGV[7] == '1' and old ~= 'queued' and old ~= 'running' then return old end
finish(KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'failure', ARGV[6]) end
return old
"""
)

# KEYS[1]: job hash, KEYS[2]: ACTIVE. ARGV: now. Only a queued job starts running.
_RUN = """
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[1])
if redis.call('HGET', KEYS[1], 'state') == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running')
  redis.call('HINCRBY', KEYS[2], 'queued', -1)
  redis.call('HINCRBY', KEYS[2], 'running', 1)
end
"""

# KEYS[1]: the job's content hash, KEYS[2]: the job hash. ARGV: sha256, item index. A key made after the
# job ended takes the job's remaining TTL.
_CLAIM = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return redis.call('HGET', KEYS[1], ARGV[1])
"""


def _text(value: object) -> str:
    """A Redis reply as str (the client returns bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


def check_job_id(job_id: object) -> str:
    """A job id as `new_job_id` makes them (32 lowercase hex characters); anything else is unknown."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        shown = repr(job_id)[:80]
        raise NotFound(
            f"unknown job {shown}: a job id is 32 lowercase hex characters",
            {"reason": "malformed_job_id"},
        )
    return job_id


def new_job_id() -> str:
    return uuid.uuid4().hex


def chunks(total: int, size: int) -> list[tuple[int, int]]:
    """[start, end) ranges that split `total` items into tasks of `size`."""
    return [(start, min(start + size, total)) for start in range(0, total, size)]


class JobStore:
    """Job records in Redis. A finished job's keys expire `ttl_s` seconds after it ends (JOB_TTL_S)."""

    def __init__(self, client: redis.Redis, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._record = client.register_script(_RECORD)
        self._end = client.register_script(_END)
        self._run = client.register_script(_RUN)
        self._claim = client.register_script(_CLAIM)

    def keys(self, job_id: str) -> list[str]:
        """Every Redis key of the job (the ones that exist and the ones that may come)."""
        return [self._key(job_id, part) for part in PARTS]

    def _finish_keys(self, job_id: str) -> list[str]:
        return [*self.keys(job_id), ACTIVE, INDEX]

    def _end_job(
        self, job_id: str, state: JobState, reason: str = "", only_if_active: bool = False
    ) -> str | None:
        """Move the job to a final state and start its TTL; returns the state before (None: no job)."""
        args = [state.value, time.time(), self.ttl_s, PREFIX, ENDED, reason, "1" if only_if_active else "0"]
        old = self._end(keys=self._finish_keys(job_id), args=args)
        return _text(old) if old is not None else None

    @staticmethod
    def _key(job_id: str, part: str = "") -> str:
        # The id is checked here, where it becomes a Redis key: "abc:items" must not name another key.
        return f"{PREFIX}{check_job_id(job_id)}{':' + part if part else ''}"

    def create(
        self,
        kind: str,
        collection: str,
        items: list[dict[str, Any]],
        *,
        options: dict[str, Any] | None = None,
        request_id: str | None = None,
        job_id: str | None = None,
        open_ended: bool = False,
    ) -> str:
        """Record a job and its planned items. An `open_ended` job takes more items later (`append`) and
        cannot complete before `close`; nor can a job of FINAL_STEP_KINDS, which its worker closes."""
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
                "progress_at": now,
                "request_id": request_id or "",
                "options": json.dumps(options or {}),
                **({"open": "1"} if open_ended else {}),
                **({"open": HELD_FOR_STEP} if kind in FINAL_STEP_KINDS else {}),
            },
        )
        if items:
            pipe.rpush(self._key(job_id, "items"), *[json.dumps(item) for item in items])
        pipe.zadd(INDEX, {job_id: now})
        pipe.hincrby(ACTIVE, JobState.QUEUED.value, 1)
        pipe.sadd(OPEN_JOBS, self._key(job_id))
        pipe.execute()
        if not items and not open_ended:
            self._end_job(job_id, JobState.COMPLETED)
        return job_id

    def options(self, job_id: str) -> dict[str, Any]:
        raw = self.redis.hget(self._key(job_id), "options")
        if raw is None:
            raise NotFound(f"unknown job {job_id!r}")
        loaded: dict[str, Any] = json.loads(raw)
        return loaded

    def items(self, job_id: str, start: int, end: int) -> list[dict[str, Any]]:
        """The planned items; one that is not a JSON object comes back as a refused item, so that it is
        failed with the reason alone (workers check every item again before they act on it)."""
        raw = self.redis.lrange(self._key(job_id, "items"), start, end - 1)
        items: list[dict[str, Any]] = []
        for index, entry in enumerate(raw, start):
            try:
                item = json.loads(entry)
            except (ValueError, UnicodeDecodeError):
                item = None
            if not isinstance(item, dict):
                item = {"kind": "rejected", "name": f"item {index}", "reason": "malformed job item: not JSON"}
            items.append(item)
        return items

    def recorded(self, job_id: str, indexes: list[int]) -> dict[int, str]:
        """Outcomes already recorded for these items (a redelivered chunk skips them)."""
        if not indexes:
            return {}
        values = self.redis.hmget(self._key(job_id, "outcome"), [str(i) for i in indexes])
        return {i: _text(v) for i, v in zip(indexes, values, strict=True) if v is not None}

    def begin_delivery(self, job_id: str, start: int, end: int) -> int:
        """Count a start of chunk [start, end); returns how many earlier starts never finished, i.e.
        how many times a worker process died on this chunk (a finished run calls `end_delivery`)."""
        key = self._key(job_id, "deliveries")
        pipe = self.redis.pipeline()
        pipe.hincrby(key, f"{start}-{end}", 1)
        pipe.expire(key, self.ttl_s)
        count, _ = pipe.execute()
        return int(count) - 1

    def end_delivery(self, job_id: str, start: int, end: int) -> None:
        """The chunk's run ended in this process (done, failed or handed to Celery's retry)."""
        self.redis.hdel(self._key(job_id, "deliveries"), f"{start}-{end}")

    def claim_contents(self, job_id: str, items: Sequence[tuple[str, int]]) -> list[int]:
        """Per (sha256, index) pair, in order, in one pipeline: the first item of this job with these
        bytes (the index itself when it is the first; later ones are duplicates within the job)."""
        keys = [self._key(job_id, "sha"), self._key(job_id)]
        pipe = self.redis.pipeline(transaction=False)
        for sha256, index in items:
            self._claim(keys=keys, args=[sha256, index], client=pipe)
        owners = pipe.execute() if items else []
        return [int(o) if o is not None else i for o, (_, i) in zip(owners, items, strict=True)]

    def record(self, job_id: str, index: int, outcome: Outcome, file: str = "", reason: str = "") -> bool:
        """Whether the outcome was new (False: the item already had one)."""
        args = self._record_args(ItemOutcome(index, outcome, file, reason), time.time())
        return bool(self._record(keys=self._finish_keys(job_id), args=args))

    def record_many(self, job_id: str, outcomes: Sequence[ItemOutcome]) -> list[bool]:
        """`record` for several outcomes, in order, in one pipeline (each one is atomic on its own): the
        store stage records a batch at once instead of one round trip per item."""
        keys, now = self._finish_keys(job_id), time.time()
        pipe = self.redis.pipeline(transaction=False)
        for outcome in outcomes:
            self._record(keys=keys, args=self._record_args(outcome, now), client=pipe)
        return [bool(r) for r in pipe.execute()] if outcomes else []

    def _record_args(self, o: ItemOutcome, now: float) -> list[Any]:
        error = json.dumps({"file": o.file, "reason": o.reason}) if o.outcome is Outcome.FAILED else ""
        return [o.index, o.outcome.value, error, now, self.ttl_s, PREFIX, ENDED]

    def mark_running(self, job_id: str) -> None:
        # Only a queued job starts running; a cancelled or finished one stays as it is.
        self._run(keys=[self._key(job_id), ACTIVE], args=[time.time()])

    def state(self, job_id: str) -> JobState:
        value = self.redis.hget(self._key(job_id), "state")
        if value is None:
            raise NotFound(f"unknown job {job_id!r}")
        return JobState(_text(value))

    def cancel(self, job_id: str) -> JobReport:
        old = self._end_job(job_id, JobState.CANCELLED, only_if_active=True)
        if old is None:
            raise NotFound(f"unknown job {job_id!r}")
        if JobState(old) in FINAL_STATES:
            raise Conflict(f"job {job_id} is already {old}")
        return self.get(job_id)

    def fail(self, job_id: str, reason: str) -> None:
        """End the job as failed; `reason` is what `get` reports as `failure`."""
        self._end_job(job_id, JobState.FAILED, reason)

    def fail_remaining(self, job_id: str, start: int, end: int, reason: str) -> int:
        """Record every item of [start, end) that has no outcome yet as failed with ``reason`` (a chunk
        that cannot run), so that the job still finishes; returns how many were newly failed."""
        items = self.items(job_id, start, end)
        indexes = list(range(start, start + len(items)))
        already = self.recorded(job_id, indexes)
        failed = 0
        for index, item in zip(indexes, items, strict=True):
            if index not in already:
                name = item.get("name")
                file = name[:MAX_ITEM_NAME] if isinstance(name, str) else f"item {index}"
                failed += self.record(job_id, index, Outcome.FAILED, file, reason)
        return failed

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
        state = JobState(fields["state"])
        paused_until = float(fields.get("paused_until") or 0)
        paused = fields.get("paused") if state not in FINAL_STATES and paused_until > time.time() else None
        errors: list[FileError] = []
        if with_errors:
            entries = self.redis.hgetall(self._key(job_id, "errors"))
            ordered = sorted(entries.items(), key=lambda kv: int(kv[0]))
            errors = [FileError.model_validate_json(value) for _, value in ordered]
        return JobReport(
            id=job_id,
            kind=fields["kind"],
            collection=fields["collection"],
            state=state,
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
            failure=fields.get("failure") or None,
            paused=paused or None,
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
        """Jobs by state: queued and running now, and those that ended within the TTL (their records are
        still there). A fixed number of commands in one round trip, however many jobs there were."""
        since = time.time() - self.ttl_s
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(ACTIVE, [JobState.QUEUED.value, JobState.RUNNING.value])
        final = [state for state in JobState if state in FINAL_STATES]
        for state in final:
            pipe.zcount(ENDED + state.value, since, "+inf")
        active, *ended = pipe.execute()
        counts = {state.value: 0 for state in JobState}
        counts[JobState.QUEUED.value] = max(0, int(active[0] or 0))
        counts[JobState.RUNNING.value] = max(0, int(active[1] or 0))
        for state, count in zip(final, ended, strict=True):
            counts[state.value] = int(count)
        return counts
