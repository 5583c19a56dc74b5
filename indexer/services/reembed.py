"""The door to re-embedding (indexer/pipeline/reembed.py): move a collection to the service's model from
the stored originals, as a `reembed` job started through the JobQueue port."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.jobs.kinds import JobKind
from indexer.jobs.store import new_job_id
from indexer.pipeline.reembed import plan
from indexer.services.backends import Collections
from indexer.services.ingest import JobStarted, start_ingest_job
from indexer.services.jobs import JobsService


@dataclass
class ReembedService:
    backends: Collections
    jobs: JobsService

    def start(self, name: str, request_id: str | None = None) -> JobStarted:
        info = self.backends.collection(name)
        items, options = plan(self.backends.weaviate, info, self.backends.model_id)
        return start_ingest_job(
            self.backends,
            self.jobs,
            info,
            JobKind.REEMBED,
            items,
            options.model_dump(),
            new_job_id(),
            request_id,
        )
