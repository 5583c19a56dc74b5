"""A folder sync's first step, on a worker: hash the folder, compare it with the collection
(indexer/sync/diff.py), record what it found, and (unless a dry run) move the renamed images, delete the
removed ones with their unshared blobs, and queue the new and changed files as ingest chunks of the same
job, which completes once they all have an outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from indexer.errors import ClipsearchError, Conflict
from indexer.jobs.store import FINAL_STATES, MAX_APPEND, chunks
from indexer.jobs.sync_record import SyncPlanned, SyncRecord
from indexer.pipeline.chunk import IngestRuntime
from indexer.sources.items import FolderItem, JobItem
from indexer.storage.gc import BlobCollector
from indexer.store.collections import get_collection
from indexer.store.folder_images import delete, images_under, move, stored_by_sha
from indexer.store.images import ImageStore
from indexer.sync import hash_cache
from indexer.sync.diff import SyncDiff, diff
from indexer.sync.files import FolderFiles, folder_files

log = logging.getLogger(__name__)
INTERRUPTED = "the sync was interrupted while it queued its files; run it again"


def plan_sync(rt: IngestRuntime, job_id: str, enqueue: Callable[[int, int], None]) -> None:
    """Plan and start the sync job ``job_id`` (options: `path`, `dry_run`); ``enqueue(start, end)``
    queues an ingest chunk of it. A folder that may not be used fails the job with the reason. Safe to
    run again (an outage, a re-delivery while it hashes a large folder): only one run queues the files,
    and a run that died while it queued them fails the job."""
    jobs = rt.jobs
    if jobs.state(job_id) in FINAL_STATES:
        return
    record = SyncRecord(jobs.redis, jobs.keys(job_id)[0])
    jobs.mark_running(job_id)
    options = jobs.options(job_id)
    try:
        info = get_collection(rt.weaviate, jobs.get(job_id, with_errors=False).collection, with_count=False)
        resolved = str(Path(str(options["path"])).resolve())
        folder = folder_files(str(options["path"]), rt.settings, hash_cache.load(jobs.redis, resolved))
    except ClipsearchError as exc:  # the folder or collection went away, or is no longer allowed
        jobs.fail(job_id, exc.message)
        return
    hash_cache.save(jobs.redis, folder.folder, folder.known)
    log.info("sync job %s: %d files, %d read and hashed", job_id, len(folder.files), folder.hashed)
    store = ImageStore(rt.weaviate, info.model_id)
    found = diff(
        folder.files,
        images_under(store, info.name, folder.folder),
        stored_by_sha(store, info.name, sorted(set(folder.files.values()))),
    )
    dry_run = bool(options.get("dry_run"))
    record.save(_planned(found, folder, dry_run))
    if not dry_run:
        for image, path in found.moves + found.adopt:
            move(store, image.uuid, path)
        if found.remove:
            delete(store, found.remove)
            BlobCollector(rt.weaviate, jobs.redis, rt.blobs).collect(i.sha256 for i in found.remove)
    if not record.claim():  # moves and removals are safe to make again; queueing the files is not
        if record.interrupted():
            log.warning("sync job %s: a worker died while it queued the files: failing the job", job_id)
            jobs.fail(job_id, INTERRUPTED)
        return  # else another delivery of this task queued them, or is queueing them now
    items: list[JobItem] = [] if dry_run else _to_embed(found, folder)
    items += folder.refused  # reported as failed with their reasons, in a dry run too
    open_jobs = jobs  # the sync job is an open job: its items are appended as the plan finds them
    try:
        for start in range(0, len(items), MAX_APPEND):
            batch = items[start : start + MAX_APPEND]
            total = open_jobs.append(job_id, [item.to_json() for item in batch])
            for a, b in chunks(len(batch), rt.settings.ingest_chunk_size, total - len(batch)):
                enqueue(a, b)
            record.renew()
    except Conflict:  # cancelled meanwhile
        return
    record.queued()
    open_jobs.close(job_id)


def _to_embed(found: SyncDiff, folder: FolderFiles) -> list[JobItem]:
    """The changed files, then the new ones (SyncPlanned's layout)."""
    return [FolderItem(path=path, root=folder.root, name=path) for path in found.replace + found.add]


def _planned(found: SyncDiff, folder: FolderFiles, dry_run: bool) -> SyncPlanned:
    replace_end = 0 if dry_run else len(found.replace)
    return SyncPlanned(
        dry_run=dry_run,
        added=len(found.add),
        replaced=found.replaced,
        moved=len(found.moves),
        adopted=len(found.adopt),
        removed=found.removed,
        unchanged=found.unchanged,
        skipped=folder.skipped,
        replace_end=replace_end,
        add_end=replace_end + (0 if dry_run else len(found.add)),
    )
