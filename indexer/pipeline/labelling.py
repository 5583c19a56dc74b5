"""Bulk labelling: classify every image of a collection from its stored vector (no re-embedding) and
write ``labels`` / ``label_scores`` into the image objects, so that search can filter by label.

A job lists the collection's image ids once (JobStore items) and runs as chunks on the chunk runner
(indexer/pipeline/runner.py, as a VectorUseCase: its prologue, crash accounting and end). Each chunk
fetches its images with their vectors, scores them in numpy, and patches the objects whose labels change. The
labels a class set owns (its classes, now and in earlier runs) are replaced; labels from other class
sets and classifiers stay. Outcomes are recorded per image (``indexed`` = labelled), so a re-delivered
chunk neither double-counts nor fails, and re-running the job after the class set changed simply
relabels.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import weaviate
from weaviate.classes.query import Filter

from indexer.classify.scorer import Scorer, ScorerCache
from indexer.classify.scoring import assign
from indexer.classify.store import ClassStore, Kind
from indexer.errors import InvalidInput
from indexer.jobs.kinds import JobKind
from indexer.jobs.store import JobReport, JobStore, Outcome
from indexer.pipeline.chunk import IngestRuntime
from indexer.sources.items import LabelItem, item_name, parse_label_item
from indexer.store.images import ImageStore, in_collection, vector_of
from indexer.store.scan import scan

JOB_KIND = JobKind.LABEL
UPDATE_THREADS = 4

CACHE = ScorerCache(maxsize=8)  # a job's chunks read the references once per worker process


def collection_ids(client: weaviate.WeaviateClient, model_id: str, collection: str) -> list[str]:
    images = ImageStore(client, model_id)
    where = in_collection(collection)
    return [str(obj.uuid) for page in scan(images.collection, where, "sha256", properties=[]) for obj in page]


def plan_label_job(
    store: ClassStore,
    scorer: Scorer,
    collection: str,
    *,
    threshold: float | None,
    multi_label: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """List the images of the collection: the job's items and options. ``scorer`` (loaded, so an empty
    class set was refused before any job exists) holds the record. The job itself is started by
    indexer.services.classify.ClassifyService (record, then enqueue its chunks)."""
    client = store.client
    record = scorer.record
    threshold = record.threshold if threshold is None else threshold
    if multi_label and threshold is None:
        raise InvalidInput("multi_label needs a threshold: set one on the class set or in the request")
    owned = sorted(set(record.labelled_names) | set(record.classes))
    if owned != sorted(record.labelled_names):
        record.labelled_names = owned
        store.save(record)
    ids = collection_ids(client, record.model_id, collection)
    items = [LabelItem(id=image_id, name=image_id).to_json() for image_id in ids]
    options = {
        "kind": record.kind.value,
        "name": record.name,
        "version": record.version,
        "threshold": threshold,
        "multi_label": multi_label,
        "owned": owned,
    }
    return items, options


class LabelUseCase:
    """Labels a chunk of a label job's images from their stored vectors (a VectorUseCase)."""

    def process(self, rt: IngestRuntime, job_id: str, options: dict[str, Any], start: int, end: int) -> None:
        label_chunk(rt.weaviate, rt.jobs, job_id, options, start, end)

    def finished(self, rt: IngestRuntime, report: JobReport) -> None:
        """No final step: a label job completes with its last outcome."""


def label_chunk(
    client: weaviate.WeaviateClient,
    jobs: JobStore,
    job_id: str,
    options: dict[str, Any],
    start: int,
    end: int,
) -> None:
    """Label images [start, end) of a running label job; ``options`` are the job's."""
    store = ClassStore(client)
    record = store.get(Kind(options["kind"]), options["name"])
    scorer = CACHE.get(store, record)
    images = ImageStore(client, record.model_id)
    items = jobs.items(job_id, start, end)
    indexes = list(range(start, start + len(items)))
    already = jobs.recorded(job_id, indexes)
    todo: dict[str, int] = {}
    for index, raw in zip(indexes, items, strict=True):
        if index in already:
            continue
        try:  # an item is checked before it reaches a Weaviate filter: Redis is a trust boundary
            todo[parse_label_item(raw).id] = index
        except InvalidInput as exc:
            jobs.record(job_id, index, Outcome.FAILED, item_name(raw, index)[:200], exc.message)
    if not todo:
        return
    result = images.collection.query.fetch_objects(
        filters=Filter.by_id().contains_any(list(todo)),
        limit=len(todo),
        include_vector=True,
        return_properties=["labels", "label_scores"],
    )
    found = [(obj, vector_of(obj)) for obj in result.objects]
    found = [(obj, v) for obj, v in found if v is not None]
    for image_id in set(todo) - {str(obj.uuid) for obj, _ in found}:
        jobs.record(job_id, todo[image_id], Outcome.FAILED, image_id, "the image no longer exists")
    if not found:
        return
    vectors = np.asarray([v for _, v in found], dtype=np.float32)
    scores = scorer.scores(vectors)
    picks = assign(scores, options["threshold"], multi_label=bool(options["multi_label"]))
    owned = set(options["owned"]) | set(record.classes)
    classes = scorer.references.classes
    changes: list[tuple[str, list[str], dict[str, float]]] = []
    for row, ((obj, _), chosen) in enumerate(zip(found, picks, strict=True)):
        props: dict[str, Any] = dict(obj.properties)
        old_labels = [str(label) for label in props.get("labels") or []]
        old_scores: dict[str, float] = json.loads(props.get("label_scores") or "{}")
        labels = [label for label in old_labels if label not in owned]
        label_scores = {k: v for k, v in old_scores.items() if k not in owned}
        for j in chosen:
            if classes[j] not in labels:
                labels.append(classes[j])
            label_scores[classes[j]] = round(float(scores[row, j]), 6)
        if labels != old_labels or label_scores != old_scores:
            changes.append((str(obj.uuid), labels, label_scores))
    # Weaviate has no batch merge: one PATCH per changed object, a few in flight at once
    with ThreadPoolExecutor(UPDATE_THREADS) as pool:
        list(pool.map(lambda change: images.update_labels(*change), changes))
    for obj, _ in found:
        jobs.record(job_id, todo[str(obj.uuid)], Outcome.INDEXED)
