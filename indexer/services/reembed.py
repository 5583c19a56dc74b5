"""The re-embed use case: move a collection to the service's model from the stored originals.

Planning lists the collection's images (one `StoredItem` each) and starts a `reembed` job through the
JobQueue port; the worker side (indexer/pipeline/reembed.py, on the staged chunk runner) re-encodes each
chunk and the last chunk switches the collection over (or fails the job with the reason, which
GET /jobs/<id> shows)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from indexer.errors import Conflict, InvalidInput
from indexer.jobs.store import REEMBED, new_job_id
from indexer.services.backends import Backends
from indexer.services.ingest import JobStarted, start_ingest_job
from indexer.services.jobs import JobsService
from indexer.store.collections import reembed_items


class ReembedOptions(BaseModel):
    from_model: str
    to_model: str


@dataclass
class ReembedService:
    backends: Backends
    jobs: JobsService

    def start(self, name: str, request_id: str | None = None) -> JobStarted:
        info = self.backends.collection(name)
        target = self.backends.model_id
        if info.model_id == target:
            raise Conflict(f"collection {name!r} already uses model {target}")
        items = reembed_items(self.backends.weaviate, info)
        if not items:
            raise InvalidInput(f"collection {name!r} has no images to re-embed")
        options = ReembedOptions(from_model=info.model_id, to_model=target)
        return start_ingest_job(
            self.backends,
            self.jobs,
            info,
            REEMBED,
            items,
            options.model_dump(),
            new_job_id(),
            request_id,
        )
