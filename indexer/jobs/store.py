"""Job records in Redis: the plan (one entry per input item), progress counters and per-file errors.

Every item's outcome is recorded once (HSETNX), and the counters move only when an outcome is new, so a
chunk that a second worker re-runs after a crash cannot count an image twice. The last outcome of a job
flips it to `completed` in the same atomic script, unless the job is held (`Hold`: an open upload until
its client closes it, a job with a final step until its worker does). The scripts are in
indexer/jobs/scripts.py.

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
from indexer.jobs import scripts
from indexer.jobs.kinds import JobKind
from indexer.jobs.sync_record import FIELD as SYNC_FIELD
from indexer.jobs.sync_record import SyncCounts, sync_counts

PREFIX = "clipsearch:job:"
INDEX = "clipsearch:jobs"
# Jobs by state, kept as the states change, so that a metrics scrape costs a few commands, not one per
# job: a hash of the queued and running counts, and one sorted set per final state (job id by finish
# time) whose entries older than the TTL are pruned as jobs finish.
ACTIVE = "clipsearch:jobs:active"
ENDED = "clipsearch:jobs:ended:"
UNFINISHED = scripts.UNFINISHED  # the jobs not yet in a final state (the sweeper's walk)
PARTS = ("", "items", "outcome", "errors", "sha")  # every Redis key of a job: PREFIX + id [+ ":" + part]
DEFAULT_TTL_S = 7 * 24 * 3600  # Settings.job_ttl_s
MAX_APPEND = 5000  # items in one append (Lua's unpack takes a few thousand arguments)
MAX_ITEM_NAME = 8192  # indexer.sources.plan.MAX_ITEM_TEXT: the longest name an outcome is reported under


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


class Hold(StrEnum):
    """What a job waits for, besides its items' outcomes, before it completes (the record's `hold`)."""

    NONE = "none"  # nothing: its last outcome completes it
    OPEN = "open"  # an open upload: takes more items (`append`) until its client closes it (`close`)
    STEP = "step"  # a kind with a final step: the worker that runs the step closes it


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
    errors: list[FileError] = Field(
        default_factory=list,
        description="a page of the failed items with their reasons, in plan order (`failures_offset`, "
        "`failures_limit` of GET /jobs/<id>)",
    )
    errors_total: int = Field(default=0, description="how many failed items have a reason, in all pages")
    errors_next_offset: int | None = Field(
        default=None, description="the `failures_offset` of the next page of failed items (None: last page)"
    )
    sync: SyncCounts | None = Field(default=None, description="a folder sync's counts (kind `sync`)")


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


def chunks(total: int, size: int, first: int = 0) -> list[tuple[int, int]]:
    """[start, end) ranges that split `total` items into tasks of `size`; ``first``: the plan's index of
    the first item (items just appended to an open job start at its old total)."""
    return [(first + start, first + min(start + size, total)) for start in range(0, total, size)]


class JobStore:
    """Job records in Redis. A finished job's keys expire `ttl_s` seconds after it ends (JOB_TTL_S)."""

    def __init__(self, client: redis.Redis, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._record = client.register_script(scripts.RECORD)
        self._end = client.register_script(scripts.END)
        self._run = client.register_script(scripts.RUN)
        self._claim = client.register_script(scripts.CLAIM)
        self._append = client.register_script(scripts.APPEND)
        self._close = client.register_script(scripts.CLOSE)

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
        kind: JobKind,
        collection: str,
        items: list[dict[str, Any]],
        *,
        options: dict[str, Any] | None = None,
        request_id: str | None = None,
        job_id: str | None = None,
        open_ended: bool = False,
    ) -> str:
        """Record a job and its planned items. An `open_ended` job takes more items later (`append`) and
        cannot complete before `close`; nor can a job of a kind with a final step, which its worker closes."""
        kind = JobKind(kind)
        hold = Hold.OPEN if open_ended else Hold.STEP if kind.has_final_step else Hold.NONE
        job_id = job_id or new_job_id()
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.hset(
            self._key(job_id),
            mapping={
                "id": job_id,
                "kind": kind.value,
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
                "hold": hold.value,
            },
        )
        if items:
            pipe.rpush(self._key(job_id, "items"), *[json.dumps(item) for item in items])
        pipe.zadd(INDEX, {job_id: now})
        pipe.hincrby(ACTIVE, JobState.QUEUED.value, 1)
        pipe.sadd(UNFINISHED, self._key(job_id))
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
        return self.get(job_id, with_errors=False)

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

    # -- open jobs: a job that takes more items after it starts (a page uploading a folder in many
    # requests), and completes only once its client closes it. `create(..., open_ended=True)` records it
    # with the hold `open` and no items; the record script does not complete a held job however many
    # outcomes it has. `append` adds items atomically (refused once the job is closed, cancelled or gone)
    # and returns the new total, so the caller enqueues chunks over the new index range. `close` releases
    # the hold and completes the job at once if every item already has an outcome.

    def hold(self, job_id: str) -> Hold:
        """What the job waits for besides its outcomes (a record written before the `hold` field: its
        `open` flag, "1" an open upload, "step" a job held for its step)."""
        hold, flag = self.redis.hmget(self._key(job_id), ["hold", "open"])
        if hold is not None:
            return Hold(_text(hold))
        legacy = {"1": Hold.OPEN, "step": Hold.STEP}
        return legacy.get(_text(flag), Hold.NONE) if flag is not None else Hold.NONE

    def require_open(self, job_id: str) -> None:
        """NotFound or Conflict unless the job takes more items now (`append` checks again, atomically)."""
        state = self.redis.hget(self._key(job_id), "state")
        if state is None:
            raise NotFound(f"unknown job {job_id!r}")
        if state not in (b"queued", b"running"):
            raise Conflict(f"job {job_id} has ended: it takes no more files", {"reason": "job_ended"})
        if self.hold(job_id) is not Hold.OPEN:
            raise Conflict(f"job {job_id} is closed: it takes no more files", {"reason": "job_closed"})

    def append(self, job_id: str, items: list[dict[str, Any]]) -> int:
        """Add items at the end of an open job's plan; returns the new total (the items are the last ones)."""
        if not items or len(items) > MAX_APPEND:
            raise ValueError(f"append 1 to {MAX_APPEND} items at a time")
        keys = self.keys(job_id)
        total = int(self._append(keys=[keys[0], keys[1]], args=[json.dumps(item) for item in items]))
        if total == -3:
            raise NotFound(f"unknown job {job_id!r}")
        if total == -2:
            raise Conflict(f"job {job_id} has ended: it takes no more files", {"reason": "job_ended"})
        if total == -1:
            raise Conflict(f"job {job_id} is closed: it takes no more files", {"reason": "job_closed"})
        return total

    def close(self, job_id: str) -> str:
        """Release the job's hold (an open upload's client, or the worker after a final step): it completes
        when every item has an outcome (now, if they all have one). Returns the state before. Closing twice
        is harmless."""
        old = self._close(keys=self._finish_keys(job_id), args=[time.time(), self.ttl_s, PREFIX, ENDED])
        if old is None:
            raise NotFound(f"unknown job {job_id!r}")
        return _text(old)

    def get(
        self,
        job_id: str,
        *,
        with_errors: bool = True,
        errors_offset: int = 0,
        errors_limit: int | None = None,
    ) -> JobReport:
        """The job's report; with ``with_errors``, the failed items from ``errors_offset`` on, at most
        ``errors_limit`` of them (None: all), and their total count."""
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
        errors_total, errors_next = failed, None  # each failed outcome has a reason (record, fail_remaining)
        if with_errors:
            errors, errors_total, errors_next = self._errors_page(job_id, errors_offset, errors_limit)
        sync = None
        if fields.get(SYNC_FIELD):
            failed_at = [int(index) for index in self.redis.hkeys(self._key(job_id, "errors"))]
            sync = sync_counts(fields[SYNC_FIELD], failed_at, failed)
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
            sync=sync,
            errors_total=errors_total,
            errors_next_offset=errors_next,
        )

    def _errors_page(
        self, job_id: str, offset: int, limit: int | None
    ) -> tuple[list[FileError], int, int | None]:
        """A page of the failed items in plan order, their total, and the next page's offset (None: none).
        Only the item indexes are read whole (HKEYS); the reasons of the page alone (HMGET)."""
        key = self._key(job_id, "errors")
        indexes = sorted(int(k) for k in self.redis.hkeys(key))
        end = len(indexes) if limit is None else min(len(indexes), offset + limit)
        page = indexes[offset:end]
        values = self.redis.hmget(key, [str(i) for i in page]) if page else []
        errors = [FileError.model_validate_json(v) for v in values if v is not None]
        return errors, len(indexes), end if end < len(indexes) else None

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
