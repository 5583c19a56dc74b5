"""A folder sync's own part of its job record: what its plan found (the `sync` field of the job hash)
and the counts that GET /jobs/<id> reports from it.

The plan's items are laid out as [replaced files..., added files..., refused files...], so that a failed
item's index tells which count it is taken from."""

from __future__ import annotations

from collections.abc import Iterable

import redis
from pydantic import BaseModel, Field

from indexer.errors import NotFound

FIELD = "sync"
PLANNING = "sync_planning"  # "queueing" once a worker has begun to queue the plan's items, then "queued"
QUEUED = "queued"
LOCK_TTL_S = 120  # the queueing worker's lease (queueing 100,000 items takes seconds), renewed per batch


class SyncPlanned(BaseModel):
    dry_run: bool
    added: int
    replaced: int
    moved: int
    adopted: int = 0  # (a plan saved before adoption existed has none)
    removed: int
    unchanged: int
    skipped: int
    replace_end: int  # items [0, replace_end) replace changed files
    add_end: int  # items [replace_end, add_end) are new files; the rest were refused


class SyncCounts(BaseModel):
    """A folder sync's report: what it changed (or, in a dry run, would change)."""

    dry_run: bool
    added: int = Field(description="new files indexed (less those that failed)")
    replaced: int = Field(description="changed files whose image was replaced (less those that failed)")
    moved: int = Field(description="moved or renamed files: the image took the new path, not re-embedded")
    adopted: int = Field(
        default=0,
        description="files uploaded earlier from this folder (`clipsearch index`, the page): the image took "
        "the file's path, not re-embedded, and is kept in step from now on",
    )
    removed: int = Field(description="deleted files whose image (and unshared blobs) went")
    failed: int = Field(description="files that could not be read or indexed (see `errors`)")
    unchanged: int
    skipped: int = Field(description="files that are not images (empty, or an unknown format)")


def sync_counts(raw: str | bytes, failed_at: Iterable[int], failed: int) -> SyncCounts:
    planned = SyncPlanned.model_validate_json(raw)
    indexes = list(failed_at)
    failed_replace = sum(1 for i in indexes if i < planned.replace_end)
    failed_add = sum(1 for i in indexes if planned.replace_end <= i < planned.add_end)
    return SyncCounts(
        dry_run=planned.dry_run,
        added=planned.added - failed_add,
        replaced=planned.replaced - failed_replace,
        moved=planned.moved,
        adopted=planned.adopted,
        removed=planned.removed,
        failed=failed,
        unchanged=planned.unchanged,
        skipped=planned.skipped,
    )


class SyncRecord:
    """Writes a sync job's plan into its record (the job hash of indexer/jobs/store.py)."""

    def __init__(self, redis_client: redis.Redis, job_key: str) -> None:
        self.redis = redis_client
        self.key = job_key

    def claim(self) -> bool:
        """True for the first worker to queue the plan's items (it holds a lease until ``queued``);
        False when another one began."""
        if not self.redis.exists(self.key):
            raise NotFound("the sync job is gone")
        if not self.redis.hsetnx(self.key, PLANNING, "queueing"):
            return False
        self.renew()
        return True

    def renew(self) -> None:
        self.redis.set(self.key + ":sync_lease", "1", ex=LOCK_TTL_S)

    def queued(self) -> None:
        self.redis.hset(self.key, PLANNING, QUEUED)
        self.redis.delete(self.key + ":sync_lease")

    def interrupted(self) -> bool:
        """A worker began to queue the items and died before it finished (its lease ran out): the job
        cannot tell which of its items exist. (A re-delivered plan task finds this; one whose first
        delivery is still at work finds the lease, and leaves it be.)"""
        state = self.redis.hget(self.key, PLANNING)
        return (
            state is not None and state != QUEUED.encode() and not self.redis.exists(self.key + ":sync_lease")
        )

    def save(self, planned: SyncPlanned) -> None:
        """Record the plan's counts; a plan that runs again (after an outage) keeps the first ones, since
        the moves and removals it made are no longer to be made."""
        self.redis.hsetnx(self.key, FIELD, planned.model_dump_json())
