"""The re-embed use case, worker side: move a collection's images to another model's index.

The API side (indexer/services/reembed.py) plans one `stored` item per image and starts a `reembed`
job. Its chunks run on the ingest pipeline's shared stages (indexer/pipeline/runner.py: read the stored
original, decode and preprocess, infer); this use case decides what differs from an ingest: the vectors
go into the target model's index (`model_id`), no thumbnail is made (the stored one stays), each image's
stored record (tags, metadata, labels...) is copied with its new vector (`store`), and the job's end
switches the collection over, or fails the job with the reason when some images could not be moved
(`finished`), which GET /jobs/<id> shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from indexer.jobs.open import OpenJobs
from indexer.jobs.store import ItemOutcome, JobReport, Outcome
from indexer.pipeline.chunk import Chunk, IngestRuntime, Pending
from indexer.store.collections import CollectionInfo, switch_model
from indexer.store.images import ImageStore


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
        """Every image has an outcome (the job is held open for this step, FINAL_STEP_KINDS): switch the
        collection to the new model, then complete the job; or, when some images could not be
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
        OpenJobs(rt.jobs).close(report.id)  # every item has an outcome: this completes it
