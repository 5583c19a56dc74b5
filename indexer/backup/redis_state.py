"""What a backup keeps of Redis: the records of jobs that had ended (their reports, counts and per-file
errors, indexer/jobs/store.py), with the time each had left to live.

Everything else in Redis is either transient (worker heartbeats, blob pins and claims, the broker's
queues) or belongs to jobs still running, whose chunks live in the broker and cannot be restored with
them: a restored `running` job would never end. Collections, class sets, classifiers and calibrations are
not in Redis at all: they live in Weaviate, and come back with its backup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, cast

import redis
from pydantic import BaseModel, Field

from indexer.jobs.store import ENDED, FINAL_STATES, INDEX, PARTS, PREFIX

FORMAT = 1
REDIS_FILE = "redis.json"
Value = dict[str, str] | list[str] | str


class RedisKey(BaseModel):
    key: str
    type: Literal["hash", "list", "string"]
    ttl_ms: int | None = Field(default=None, description="time left to live at backup time; None: none")
    value: Value


class RedisSnapshot(BaseModel):
    format: int = FORMAT
    jobs: list[str] = Field(default_factory=list, description="the ids of the jobs exported")
    keys: list[RedisKey] = Field(default_factory=list)
    sorted_sets: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="the exported jobs' entries in the job index and per-state sets"
    )


def job_keys(job_id: str) -> list[str]:
    return [f"{PREFIX}{job_id}{':' + part if part else ''}" for part in PARTS]


def _text(raw: object) -> str:
    """A Redis reply as str (the client returns bytes)."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _read_key(client: redis.Redis, key: str) -> RedisKey | None:
    kind = _text(client.type(key))
    value: Value
    if kind == "hash":
        value = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
    elif kind == "list":
        value = [_text(v) for v in client.lrange(key, 0, -1)]
    elif kind == "string":
        raw = client.get(key)
        if raw is None:
            return None
        value = _text(raw)
    else:  # gone meanwhile ("none"), or a type no job key has
        return None
    ttl = int(client.pttl(key))
    return RedisKey(key=key, type=kind, ttl_ms=ttl if ttl > 0 else None, value=value)  # type: ignore[arg-type]


def export_ended_jobs(client: redis.Redis) -> RedisSnapshot:
    """The records of every job in a final state (completed, failed, cancelled)."""
    snapshot = RedisSnapshot()
    final = {state.value for state in FINAL_STATES}
    entries = cast(list[tuple[bytes, float]], client.zrange(INDEX, 0, -1, withscores=True))
    for raw_id, created in entries:
        job_id = _text(raw_id)
        state = client.hget(PREFIX + job_id, "state")
        if state is None or _text(state) not in final:
            continue
        keys = [entry for key in job_keys(job_id) if (entry := _read_key(client, key)) is not None]
        if not keys:
            continue
        snapshot.jobs.append(job_id)
        snapshot.keys.extend(keys)
        snapshot.sorted_sets.setdefault(INDEX, {})[job_id] = float(created)
        ended_set = ENDED + _text(state)
        finished = client.zscore(ended_set, PREFIX + job_id)
        if finished is not None:
            snapshot.sorted_sets.setdefault(ended_set, {})[PREFIX + job_id] = float(finished)
    return snapshot


def _write_key(pipe: redis.client.Pipeline, entry: RedisKey) -> None:
    if entry.type == "hash" and isinstance(entry.value, dict) and entry.value:
        pipe.hset(entry.key, mapping=cast(Any, entry.value))  # redis-py's Mapping type is invariant
    elif entry.type == "list" and isinstance(entry.value, list) and entry.value:
        pipe.rpush(entry.key, *entry.value)
    elif entry.type == "string" and isinstance(entry.value, str):
        pipe.set(entry.key, entry.value)
    else:
        return
    if entry.ttl_ms is not None:
        pipe.pexpire(entry.key, entry.ttl_ms)


def import_snapshot(client: redis.Redis, snapshot: RedisSnapshot) -> int:
    """Write the snapshot's keys back; a key that exists already is left alone (never clobbered). The
    number of keys written."""
    present = _existing(client, [entry.key for entry in snapshot.keys])
    written = 0
    pipe = client.pipeline(transaction=False)
    for entry in snapshot.keys:
        if entry.key in present:
            continue
        _write_key(pipe, entry)
        written += 1
    for name, members in snapshot.sorted_sets.items():
        if members:
            pipe.zadd(name, members, nx=True)
    pipe.execute()
    return written


def _existing(client: redis.Redis, keys: Iterable[str]) -> set[str]:
    keys = list(keys)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return {key for key, found in zip(keys, pipe.execute(), strict=True) if found}
