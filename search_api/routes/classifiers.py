"""Yes/no classifiers (the Nomic Atlas recipe): a text query or example images plus a threshold,
calibrated on labelled examples, applied to uploads, stored ids or a whole collection."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field

from indexer.errors import InvalidInput
from indexer.services.classify import Kind, ThresholdStats
from indexer.services.search import WEAVIATE_MAX_RESULTS
from search_api.logs import current_request_id
from search_api.routes.classify_common import (
    ClassSetView,
    LabelJob,
    form_json,
    label_job,
    uploaded_files,
    view,
)
from search_api.services import services
from search_api.validation import endpoint, json_body, parse, respond

bp = Blueprint("classifiers", __name__)

MAX_EXAMPLES = 5000


class ClassifierCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=2000)
    query: str | None = Field(default=None, min_length=1, description="the text that means `yes`")
    templates: list[str] | None = Field(default=None, description="default ['{}']: the query as it is")
    ensemble: bool = False
    image_ids: list[str] = Field(default_factory=list, description="stored example images of `yes`")
    vectors: list[list[float]] = Field(default_factory=list, description="raw example embeddings")
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0, description="or set it by calibrating")


class ClassifierUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    query: str | None = Field(default=None, min_length=1)
    image_ids: list[str] | None = None
    vectors: list[list[float]] | None = None


class ClassifierList(BaseModel):
    classifiers: list[ClassSetView]


class LabelledExample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_id: str
    label: bool


class CalibrateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    examples: list[LabelledExample] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    target_precision: float | None = Field(
        default=None, gt=0.0, le=1.0, description="pick the lowest threshold with at least this precision"
    )
    apply: bool = Field(default=True, description="store the chosen threshold and figures")


class ScoredExample(BaseModel):
    image_id: str | None = None
    file: str | None = None
    label: bool
    score: float


class CalibrationResponse(BaseModel):
    classifier: str
    model_id: str
    method: str = Field(description="max_f1 or target_precision")
    examples: int
    positives: int
    chosen: ThresholdStats
    thresholds: list[ThresholdStats] = Field(description="one row per distinct example score, ascending")
    scores: list[ScoredExample]
    applied: bool


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_ids: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    collection: str | None = Field(default=None, description="apply to every image of this collection")
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0, description="overrides the stored one")
    limit: int = Field(default=100, ge=1, le=WEAVIATE_MAX_RESULTS)
    offset: int = Field(default=0, ge=0)


class ClassifierLabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0, description="overrides the stored one")


class Verdict(BaseModel):
    image_id: str | None = None
    file: str | None = None
    score: float
    match: bool
    reference: dict[str, Any]


class ApplyResponse(BaseModel):
    classifier: str
    model_id: str
    threshold: float
    results: list[Verdict]
    count: int
    total: int | None = Field(
        default=None,
        description="collection: every match above the threshold; null when there are more than the "
        "offset + limit that were fetched",
    )


@bp.post("/classifiers")
@endpoint(
    "Create a yes/no classifier: a text query and/or example images, plus a threshold",
    body=ClassifierCreate,
    response=ClassSetView,
    status=201,
    tags=["classifiers"],
)
def create() -> tuple[Response, int]:
    req = parse(ClassifierCreate, json_body())
    detail = services().classify.create_classifier(
        req.name,
        query=req.query,
        image_ids=req.image_ids,
        vectors=req.vectors,
        description=req.description,
        threshold=req.threshold,
        templates=req.templates,
        ensemble=req.ensemble,
    )
    return respond(view(detail), 201)


@bp.get("/classifiers")
@endpoint("List classifiers", response=ClassifierList, tags=["classifiers"])
def list_all() -> tuple[Response, int]:
    details = services().classify.all(Kind.CLASSIFIER)
    return respond(ClassifierList(classifiers=[view(d) for d in details]))


@bp.get("/classifiers/<name>")
@endpoint(
    "A classifier with its references and calibration figures", response=ClassSetView, tags=["classifiers"]
)
def get(name: str) -> tuple[Response, int]:
    return respond(view(services().classify.detail(Kind.CLASSIFIER, name)))


@bp.patch("/classifiers/<name>")
@endpoint(
    "Change a classifier: description, threshold, or its references (query, image_ids and vectors "
    "given together replace them)",
    body=ClassifierUpdate,
    response=ClassSetView,
    tags=["classifiers"],
)
def update(name: str) -> tuple[Response, int]:
    req = parse(ClassifierUpdate, json_body())
    fields = ("description", "threshold")
    changes: dict[str, Any] = {k: getattr(req, k) for k in fields if k in req.model_fields_set}
    detail = services().classify.update_classifier(
        name, changes, query=req.query, image_ids=req.image_ids, vectors=req.vectors
    )
    return respond(view(detail))


@bp.delete("/classifiers/<name>")
@endpoint("Delete a classifier", status=204, tags=["classifiers"])
def delete(name: str) -> tuple[str, int]:
    services().classify.delete(Kind.CLASSIFIER, name)
    return "", 204


@bp.post("/classifiers/<name>/examples")
@endpoint(
    "Add uploaded example images of `yes` (multipart `files`)",
    response=ClassSetView,
    multipart={"files": "example images"},
    tags=["classifiers"],
)
def add_examples(name: str) -> tuple[Response, int]:
    files = uploaded_files(request, "files", "file")
    return respond(view(services().classify.add_examples(Kind.CLASSIFIER, name, name, files)))


def _calibrate_request() -> tuple[CalibrateRequest, list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    if request.mimetype == "multipart/form-data":
        fields: dict[str, Any] = {k: v for k, v in request.form.items() if k != "examples" and v != ""}
        fields["examples"] = form_json("examples", [])
        req = parse(CalibrateRequest, fields)
        return req, uploaded_files(request, "positive"), uploaded_files(request, "negative")
    return parse(CalibrateRequest, json_body()), [], []


@bp.post("/classifiers/<name>/calibrate")
@endpoint(
    "Calibrate on labelled examples (stored ids, or multipart `positive`/`negative` uploads): "
    "precision, recall and F1 at every threshold; the max-F1 threshold or the lowest meeting a target "
    "precision",
    body=CalibrateRequest,
    response=CalibrationResponse,
    multipart={
        "positive": "example images that should match",
        "negative": "example images that should not",
        "examples": "JSON list of {image_id, label}",
        "target_precision": "float",
        "apply": "true | false",
    },
    tags=["classifiers"],
)
def calibrate_route(name: str) -> tuple[Response, int]:
    req, positives, negatives = _calibrate_request()
    done = services().classify.calibrate(
        name,
        examples=[(e.image_id, e.label) for e in req.examples],
        positives=positives,
        negatives=negatives,
        target_precision=req.target_precision,
        apply=req.apply,
    )
    return respond(
        CalibrationResponse(
            classifier=name,
            model_id=done.record.model_id,
            method=done.result.method,
            examples=len(done.examples),
            positives=sum(e.label for e in done.examples),
            chosen=done.result.chosen,
            thresholds=done.result.rows,
            scores=[ScoredExample(**asdict(e)) for e in done.examples],
            applied=done.applied,
        )
    )


@bp.post("/classifiers/<name>/apply")
@endpoint(
    "Apply a classifier to stored ids, uploads (multipart `files`) or a whole collection (matches "
    "best first)",
    body=ApplyRequest,
    response=ApplyResponse,
    multipart={"files": "images to classify", "threshold": "float"},
    tags=["classifiers"],
)
def apply(name: str) -> tuple[Response, int]:
    files: list[tuple[str, bytes]] = []
    if request.mimetype == "multipart/form-data":
        fields = {k: v for k, v in request.form.items() if v != ""}
        req = parse(ApplyRequest, fields)
        files = uploaded_files(request, "files", "file")
        if not files:
            raise InvalidInput("no files: send multipart `files`")
    else:
        req = parse(ApplyRequest, json_body())
    done = services().classify.apply(
        name,
        image_ids=req.image_ids,
        files=files,
        collection=req.collection,
        threshold=req.threshold,
        limit=req.limit,
        offset=req.offset,
    )
    results = [Verdict(**asdict(v)) for v in done.verdicts]
    return respond(
        ApplyResponse(
            classifier=name,
            model_id=done.record.model_id,
            threshold=done.threshold,
            results=results,
            count=len(results),
            total=done.total,
        )
    )


@bp.post("/classifiers/<name>/label")
@endpoint(
    "Label every image of a collection whose score reaches the threshold with the classifier's name "
    "(a job over stored vectors; images below it lose that label)",
    body=ClassifierLabelRequest,
    response=LabelJob,
    status=202,
    tags=["classifiers"],
)
def label(name: str) -> tuple[Response, int]:
    req = parse(ClassifierLabelRequest, json_body())
    started = services().classify.label_with_classifier(
        name, req.collection, threshold=req.threshold, request_id=current_request_id()
    )
    return respond(*label_job(started))
