"""Ingest one chunk of a job: read, hash, de-duplicate, decode, embed in one batch, store, record.

Safe to run twice for the same chunk (a worker died, Redis re-delivered the task): outcomes already
recorded are skipped, objects already written by this job count as indexed, and object ids come from
the content hash, so nothing is stored or counted twice.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import weaviate
from numpy.typing import NDArray

from indexer import metrics
from indexer.blob_gc import BlobCollector
from indexer.blobs import BlobStore
from indexer.errors import ClipsearchError
from indexer.images import DecodedImage, make_thumbnail
from indexer.jobs import FINAL_STATES, REEMBED, JobState, JobStore, Outcome
from indexer.model.encoder import ClipEncoder
from indexer.settings import Settings
from indexer.sources import Item, ItemReader, item_name
from indexer.store.images import ImageRecord, ImageStore
from indexer.store.schema import image_uuid
from indexer.user_collections import get_collection, switch_model

log = logging.getLogger(__name__)


@dataclass
class IngestRuntime:
    """What a worker process holds for the life of the process."""

    settings: Settings
    weaviate: weaviate.WeaviateClient
    jobs: JobStore
    blobs: BlobStore
    encoder: ClipEncoder


@dataclass
class _Pending:
    index: int
    item: Item
    data: bytes
    sha256: str
    uuid: str
    image: DecodedImage | None = None
    thumbnail: bytes = b""


_COUNTERS = {
    Outcome.INDEXED: metrics.images_indexed,
    Outcome.FAILED: metrics.images_failed,
    Outcome.DUPLICATE: metrics.images_duplicate,
}


def _record(
    jobs: JobStore, job_id: str, index: int, outcome: Outcome, file: str = "", reason: str = ""
) -> None:
    if jobs.record(job_id, index, outcome, file, reason):
        _COUNTERS[outcome]()


def _source(item: Item) -> str:
    """Where the bytes came from: the URL, the server-side path, the archive entry, or an upload."""
    kind = item["kind"]
    if kind == "url":
        return str(item["url"])
    if kind == "folder":
        return str(item["path"])
    if kind == "zip":
        return f"zip:{item['name']}"
    return "upload"


def process_chunk(rt: IngestRuntime, job_id: str, start: int, end: int) -> None:
    jobs = rt.jobs
    if jobs.state(job_id) in FINAL_STATES:
        cleanup_staging(rt, job_id)
        return
    jobs.mark_running(job_id)
    report = jobs.get(job_id, with_errors=False)
    options = jobs.options(job_id)
    info = get_collection(rt.weaviate, report.collection, with_count=False)
    reembed = report.kind == REEMBED
    # A re-embed job writes the collection's images into the target model's index; ingest into its own.
    model_id = str(options["to_model"]) if reembed else info.model_id
    if model_id != rt.encoder.model_id:
        jobs.fail(
            job_id,
            f"job needs model {model_id} for collection {info.name!r}; this worker runs "
            f"{rt.encoder.model_id}",
        )
        return
    store = ImageStore(rt.weaviate, model_id)
    items = jobs.items(job_id, start, end)
    indexes = list(range(start, start + len(items)))
    already = jobs.recorded(job_id, indexes)

    pending: list[_Pending] = []
    reader = ItemReader(rt.settings, job_id)
    try:
        for index, item in zip(indexes, items, strict=True):
            if index in already:
                continue
            try:
                data = reader.read(item)  # checks the item first: a malformed one is failed, not run
            except ClipsearchError as exc:
                _record(jobs, job_id, index, Outcome.FAILED, item_name(item, index), exc.message)
                continue
            except Exception as exc:  # one unreadable item fails alone, never its whole chunk
                log.exception("job %s item %d could not be read", job_id, index)
                reason = f"cannot read: {exc.__class__.__name__}: {exc}"
                _record(jobs, job_id, index, Outcome.FAILED, item_name(item, index), reason)
                continue
            sha = hashlib.sha256(data).hexdigest()
            if jobs.claim_content(job_id, sha, index) != index:
                _record(jobs, job_id, index, Outcome.DUPLICATE)
                continue
            pending.append(_Pending(index, item, data, sha, image_uuid(info.name, sha)))
    finally:
        reader.close()

    existing = store.existing([p.uuid for p in pending])
    candidates: list[_Pending] = []
    for p in pending:
        if p.uuid in existing:
            # Written by this job before a crash: indexed. Written by an earlier upload: a duplicate.
            outcome = Outcome.INDEXED if existing[p.uuid] == job_id else Outcome.DUPLICATE
            _record(jobs, job_id, p.index, outcome)
        else:
            candidates.append(p)
    fresh, vectors = _decode_and_embed(rt, job_id, candidates)
    if not fresh:
        _finish(rt, job_id)
        return
    if jobs.state(job_id) is JobState.CANCELLED:
        cleanup_staging(rt, job_id)
        return
    if reembed:
        _reembed_records(rt, str(options["from_model"]), fresh, job_id, store, vectors)
        _finish(rt, job_id)
        return
    # Pinned from before the blobs are written until the objects that refer to them are stored, so that
    # a delete elsewhere of the same bytes cannot collect them in between (indexer/blob_gc.py).
    with BlobCollector(rt.weaviate, rt.jobs.redis, rt.blobs).pinned([p.sha256 for p in fresh]):
        errors = _store(rt, job_id, info.name, options, fresh, store, vectors)
    for p in fresh:
        if p.uuid in errors:
            _record(jobs, job_id, p.index, Outcome.FAILED, p.item["name"], f"vector store: {errors[p.uuid]}")
        else:
            _record(jobs, job_id, p.index, Outcome.INDEXED)
    _finish(rt, job_id)


def _store(
    rt: IngestRuntime,
    job_id: str,
    collection: str,
    options: dict[str, Any],
    fresh: list[_Pending],
    store: ImageStore,
    vectors: NDArray[np.float32],
) -> dict[str, str]:
    """Write the blobs and the image objects; returns uuid -> error for the objects that failed."""
    records = []
    now = datetime.now(UTC)
    for p in fresh:
        assert p.image is not None
        rt.blobs.put_original(p.sha256, p.data)
        rt.blobs.put_thumbnail(p.sha256, p.thumbnail)
        records.append(
            ImageRecord(
                id=p.uuid,
                collection=collection,
                filename=p.item["name"],
                source=_source(p.item),
                sha256=p.sha256,
                format=p.image.format,
                width=p.image.width,
                height=p.image.height,
                bytes=len(p.data),
                ingested_at=now,
                job_id=job_id,
                tags=list(options.get("tags") or []),
                metadata=dict(options.get("metadata") or {}),
            )
        )
    return store.insert(records, np.asarray(vectors))


def _reembed_records(
    rt: IngestRuntime,
    from_model: str,
    fresh: list[_Pending],
    job_id: str,
    store: ImageStore,
    vectors: NDArray[np.float32],
) -> None:
    """Copy the images' stored records (tags, metadata, labels...) with their new vectors."""
    old = ImageStore(rt.weaviate, from_model).records([p.uuid for p in fresh])
    moved, kept = [], []
    for p, vector in zip(fresh, vectors, strict=True):
        if p.uuid in old:
            moved.append(old[p.uuid].model_copy(update={"job_id": job_id}))
            kept.append(vector)
        else:
            _record(rt.jobs, job_id, p.index, Outcome.FAILED, p.item["name"], "deleted during the re-embed")
    errors = store.insert(moved, np.asarray(kept)) if moved else {}
    index_of = {p.uuid: p.index for p in fresh}
    for record in moved:
        index = index_of[record.id]
        if record.id in errors:
            _record(
                rt.jobs, job_id, index, Outcome.FAILED, record.filename, f"vector store: {errors[record.id]}"
            )
        else:
            _record(rt.jobs, job_id, index, Outcome.INDEXED)


def _finish(rt: IngestRuntime, job_id: str) -> None:
    """After a chunk: clean the staging area of a finished job, and complete a finished re-embed."""
    if rt.jobs.state(job_id) not in FINAL_STATES:
        return
    cleanup_staging(rt, job_id)
    report = rt.jobs.get(job_id, with_errors=False)
    if report.kind == REEMBED and report.state is JobState.COMPLETED:
        options = rt.jobs.options(job_id)
        if report.failed:
            rt.jobs.fail(
                job_id,
                f"{report.failed} images could not be re-embedded; the collection stays "
                f"on model {options['from_model']}",
            )
            return
        switch_model(rt.weaviate, report.collection, str(options["from_model"]), str(options["to_model"]))


def cleanup_staging(rt: IngestRuntime, job_id: str) -> None:
    shutil.rmtree(rt.settings.staging_dir / job_id, ignore_errors=True)


def _decode_and_embed(
    rt: IngestRuntime, job_id: str, candidates: list[_Pending]
) -> tuple[list[_Pending], NDArray[np.float32]]:
    """Decode, thumbnail and preprocess in the encoder's preparation thread while it runs inference on
    the batch before. Undecodable items are recorded as failed; the rest come back with their vectors."""
    settings = rt.settings

    def keep(i: int, image: DecodedImage) -> None:
        candidates[i].image = image
        candidates[i].thumbnail = make_thumbnail(image, settings.thumbnail_size)

    outcomes = rt.encoder.embed_image_bytes(
        [p.data for p in candidates], max_pixels=settings.max_image_pixels, on_decoded=keep
    )
    fresh: list[_Pending] = []
    vectors: list[NDArray[np.float32]] = []
    for p, outcome in zip(candidates, outcomes, strict=True):
        if outcome.error is not None or outcome.vector is None:
            reason = outcome.error.message if outcome.error is not None else "could not embed"
            _record(rt.jobs, job_id, p.index, Outcome.FAILED, p.item["name"], reason)
            continue
        fresh.append(p)
        vectors.append(outcome.vector)
    stacked = np.stack(vectors) if vectors else np.empty((0, rt.encoder.dim), dtype=np.float32)
    return fresh, stacked


def fail_remaining(rt: IngestRuntime, job_id: str, start: int, end: int, reason: str) -> None:
    """Record every item of the chunk that has no outcome yet as failed, so the job still finishes."""
    items = rt.jobs.items(job_id, start, end)
    indexes = list(range(start, start + len(items)))
    already = rt.jobs.recorded(job_id, indexes)
    for index, item in zip(indexes, items, strict=True):
        if index not in already:
            _record(rt.jobs, job_id, index, Outcome.FAILED, item_name(item, index), reason)
    _finish(rt, job_id)
