"""Re-embedding: move a collection's images to another model's index, from the stored originals. The
one home of it; the door is indexer/services/reembed.py.

`plan` checks the request and lists one `stored` item per image; the service starts a `reembed` job
with them (JobKind.REEMBED, which has a final step). Its chunks run on the staged chunk runner
(indexer/pipeline/runner.py: read the stored original, decode and preprocess, infer); `ReembedUseCase`
decides what differs from an ingest: the vectors go into the target model's index (`model_id`), no
thumbnail is made (the stored one stays), each image's stored record (tags, metadata, labels...) is
copied with its new vector (`store`), and the job's final step switches the collection over
(`switch_model`), or fails the job with the reason when some images could not be moved (`finished`),
which GET /jobs/<id> shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import weaviate
from numpy.typing import NDArray
from pydantic import BaseModel

from indexer.errors import Conflict, InvalidInput
from indexer.jobs.store import ItemOutcome, JobReport, Outcome
from indexer.pipeline.chunk import Chunk, IngestRuntime, Pending
from indexer.sources.items import StoredItem
from indexer.store.collections import CollectionInfo, get_collection, set_model
from indexer.store.images import ImageStore, in_collection
from indexer.store.scan import scan


class ReembedOptions(BaseModel):
    """A re-embed job's options: the model its collection moves from, and the one it moves to."""

    from_model: str
    to_model: str


def plan(
    client: weaviate.WeaviateClient, info: CollectionInfo, target: str
) -> tuple[list[StoredItem], ReembedOptions]:
    """The job items (one per stored image) and options that move the collection to ``target``; Conflict
    when it already uses it, InvalidInput when it has no images."""
    if info.model_id == target:
        raise Conflict(f"collection {info.name!r} already uses model {target}")
    items = reembed_items(client, info)
    if not items:
        raise InvalidInput(f"collection {info.name!r} has no images to re-embed")
    return items, ReembedOptions(from_model=info.model_id, to_model=target)


def reembed_items(client: weaviate.WeaviateClient, info: CollectionInfo) -> list[StoredItem]:
    """One job item per stored image of the collection: re-encoded from its original in the blob store."""
    store = ImageStore(client, info.model_id)
    where = in_collection(info.name)
    return [
        StoredItem(sha256=str(obj.properties["sha256"]), name=str(obj.properties["filename"]))
        for page in scan(store.collection, where, "sha256", properties=["filename"])
        for obj in page
    ]


def switch_model(client: weaviate.WeaviateClient, name: str, from_model: str, to_model: str) -> None:
    """Point a collection at the model its images were re-embedded for, then drop the old vectors.

    Idempotent: a re-run after a crash between the two steps finishes the second.
    """
    info = get_collection(client, name, with_count=False)
    if info.model_id == from_model:
        set_model(client, name, to_model)
    ImageStore(client, from_model).delete_where(in_collection(name))


class ReembedUseCase:
    """What a re-embed job does with the pipeline's stages (indexer.pipeline.chunk.ChunkUseCase)."""

    thumbnails = False  # the image's thumbnail was stored at ingest

    def model_id(self, info: CollectionInfo, options: dict[str, Any]) -> str:
        """The target model: this worker must run it, and its index receives the new vectors."""
        return str(options["to_model"])

    def store(self, chunk: Chunk, fresh: list[Pending], vectors: NDArray[np.float32]) -> None:
        """Copy the images' stored records (tags, metadata, labels...) with their new vectors; an image
        deleted while the job ran fails with that reason."""
        from_model = str(chunk.options["from_model"])
        old = ImageStore(chunk.rt.weaviate, from_model).records([p.uuid for p in fresh])
        moved, kept, outcomes = [], [], []
        for p, vector in zip(fresh, vectors, strict=True):
            if p.uuid in old:
                moved.append(old[p.uuid].model_copy(update={"job_id": chunk.job_id}))
                kept.append(vector)
            else:
                outcomes.append(
                    ItemOutcome(p.index, Outcome.FAILED, p.item.name, "deleted during the re-embed")
                )
        errors = chunk.store.insert(moved, np.asarray(kept)) if moved else {}
        index_of = {p.uuid: p.index for p in fresh}
        for record in moved:
            if record.id in errors:
                reason = f"vector store: {errors[record.id]}"
                outcomes.append(ItemOutcome(index_of[record.id], Outcome.FAILED, record.filename, reason))
            else:
                outcomes.append(ItemOutcome(index_of[record.id], Outcome.INDEXED))
        chunk.record_many(outcomes)

    def finished(self, rt: IngestRuntime, report: JobReport) -> None:
        """Every image has an outcome (the job is held for this step: JobKind.REEMBED has a final step):
        switch the collection to the new model, then complete the job; or, when some images could not be
        re-embedded, fail the job and leave the collection on its model. Both are idempotent."""
        options = rt.jobs.options(report.id)
        if report.failed:
            rt.jobs.fail(
                report.id,
                f"{report.failed} images could not be re-embedded; the collection stays "
                f"on model {options['from_model']}",
            )
            return
        switch_model(rt.weaviate, report.collection, str(options["from_model"]), str(options["to_model"]))
        rt.jobs.close(report.id)  # every item has an outcome: releasing the hold completes it
