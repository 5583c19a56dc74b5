"""Jobs: progress, counts, per-file errors; cancel."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field

from indexer.services.jobs import FAILURES_LIMIT, MAX_FAILURES_LIMIT, MAX_WAIT_S, MAX_WAITERS, JobReport
from search_api.services import services
from search_api.validation import endpoint, parse_query, respond

bp = Blueprint("jobs", __name__)


class JobListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class JobQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: float = Field(
        default=0.0,
        ge=0.0,
        le=MAX_WAIT_S,
        description=(
            "seconds to wait for the job to end before answering (long polling): the answer comes as soon "
            f"as it ends, or after this long with the job's progress. At most {MAX_WAITERS} requests wait "
            "at once per API process; beyond that the answer comes at once"
        ),
    )
    failures_limit: int = Field(
        default=FAILURES_LIMIT,
        ge=0,
        le=MAX_FAILURES_LIMIT,
        description="how many failed items to list (`errors`); `errors_total` always counts them all",
    )
    failures_offset: int = Field(
        default=0,
        ge=0,
        le=100_000_000,
        description="the first failed item to list: 0, or the `errors_next_offset` of the previous page",
    )


class JobList(BaseModel):
    jobs: list[JobReport]


@bp.get("/jobs")
@endpoint("List jobs, newest first", query=JobListQuery, response=JobList, tags=["jobs"])
def list_jobs() -> tuple[Response, int]:
    query = parse_query(JobListQuery)
    return respond(JobList(jobs=services().job_service.list(query.limit, query.offset)))


@bp.get("/jobs/<job_id>")
@endpoint(
    "A job's state, counts, rate, ETA, a page of the failed files with their reasons, and why a failed job "
    "failed",
    query=JobQuery,
    response=JobReport,
    tags=["jobs"],
)
def get(job_id: str) -> tuple[Response, int]:
    query = parse_query(JobQuery)
    report = services().job_service.report(
        job_id, wait_s=query.wait, failures_offset=query.failures_offset, failures_limit=query.failures_limit
    )
    return respond(report)


@bp.delete("/jobs/<job_id>")
@endpoint("Cancel a job; images already indexed stay", response=JobReport, tags=["jobs"])
def cancel(job_id: str) -> tuple[Response, int]:
    return respond(services().job_service.cancel(job_id))
