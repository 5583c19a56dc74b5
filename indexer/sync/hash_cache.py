"""The hashes a folder sync computed, kept in Redis for the next sync of the same folder (path -> stat
key and sha256, indexer/sync/files.py), so that only changed files are read again."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import redis

PREFIX = "clipsearch:sync:hashes:"
TTL_S = 30 * 24 * 3600  # a folder not synced for a month is hashed afresh
BATCH = 5000


def _key(folder: str) -> str:
    return PREFIX + hashlib.sha256(folder.encode("utf-8", "surrogateescape")).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")  # a file name need not be UTF-8


def load(client: redis.Redis, folder: str) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in client.hgetall(_key(folder)).items()}


def save(client: redis.Redis, folder: str, known: Mapping[str, str]) -> None:
    """Replace the folder's entries with ``known`` (files gone since are dropped)."""
    key = _key(folder)
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    entries = [(_bytes(path), _bytes(entry)) for path, entry in known.items()]
    for start in range(0, len(entries), BATCH):
        pipe.hset(key, mapping=dict(entries[start : start + BATCH]))
    pipe.expire(key, TTL_S)
    pipe.execute()
