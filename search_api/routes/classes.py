"""Class sets (create, list, get, update, delete; example uploads; raw embeddings; bulk labelling) and
`POST /classify` for an image or its regions."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field

from indexer.errors import InvalidInput
from indexer.services.classify import BoxFormat, ClassDef, Kind, parse_raw_upload
from search_api.json_limits import large_json
from search_api.logs import current_request_id
from search_api.routes.classify_common import (
    ClassSetView,
    LabelJob,
    LabelRequest,
    PredictionView,
    form_json,
    label_job,
    uploaded_files,
    view,
)
from search_api.services import services
from search_api.validation import endpoint, json_body, parse, parse_query, respond

bp = Blueprint("classes", __name__)


class ClassSetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    collection: str = Field(description="the collection (and so the model) the class set is bound to")
    description: str = Field(default="", max_length=2000)
    threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="below this top cosine score the answer is `other`"
    )
    templates: list[str] | None = Field(
        default=None,
        description="prompt templates with one {}; default ['a photo of a {}.'], or CLIP's 7-template "
        "ensemble when `ensemble` is true",
    )
    ensemble: bool = Field(default=False, description="average each prompt's templates into one vector")
    classes: dict[str, ClassDef] = Field(default_factory=dict)


class ClassSetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0, description="null clears it")
    templates: list[str] | None = None
    ensemble: bool | None = None
    classes: dict[str, ClassDef] = Field(
        default_factory=dict, description="replace these classes' references (new classes are added)"
    )
    add: dict[str, ClassDef] = Field(default_factory=dict, description="add references to these classes")
    remove_classes: list[str] = Field(default_factory=list)


class ClassSetList(BaseModel):
    class_sets: list[ClassSetView]


class ClassSetQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str | None = None


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    class_set: str
    image_id: str | None = None
    boxes: list[list[float]] | None = Field(
        default=None, description="regions [x1, y1, x2, y2] in pixels or normalised to [0, 1]"
    )
    box_format: BoxFormat = "auto"
    top_k: int = Field(default=5, ge=1, le=1000)
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0, description="overrides the stored one")


class ClassifyResponse(BaseModel):
    class_set: str
    model_id: str
    version: int
    threshold: float | None
    logit_scale: float
    logit_bias: float | None = Field(default=None, description="SigLIP models: probabilities are sigmoids")
    image_id: str | None
    width: int | None = Field(default=None, description="with boxes: the image's size in pixels")
    height: int | None = None
    predictions: list[PredictionView]
    took_ms: float


@bp.post("/class-sets")
@endpoint(
    "Create a class set bound to a collection: classes from prompts, stored example images and raw "
    "embeddings, mixed freely",
    body=ClassSetCreate,
    response=ClassSetView,
    status=201,
    tags=["classify"],
)
@large_json
def create() -> tuple[Response, int]:
    req = parse(ClassSetCreate, json_body())
    detail = services().classify.create_class_set(
        req.name,
        req.collection,
        description=req.description,
        threshold=req.threshold,
        templates=req.templates,
        ensemble=req.ensemble,
        classes=req.classes,
    )
    return respond(view(detail), 201)


@bp.get("/class-sets")
@endpoint(
    "List class sets, optionally of one collection",
    query=ClassSetQuery,
    response=ClassSetList,
    tags=["classify"],
)
def list_all() -> tuple[Response, int]:
    query = parse_query(ClassSetQuery)
    details = services().classify.all(Kind.CLASS_SET, query.collection)
    return respond(ClassSetList(class_sets=[view(d) for d in details]))


@bp.get("/class-sets/<name>")
@endpoint("A class set with its classes and references", response=ClassSetView, tags=["classify"])
def get(name: str) -> tuple[Response, int]:
    return respond(view(services().classify.detail(Kind.CLASS_SET, name)))


@bp.patch("/class-sets/<name>")
@endpoint(
    "Change a class set: threshold, description, templates (prompts are re-encoded), replace, add or "
    "remove classes",
    body=ClassSetUpdate,
    response=ClassSetView,
    tags=["classify"],
)
@large_json
def update(name: str) -> tuple[Response, int]:
    req = parse(ClassSetUpdate, json_body())
    changes: dict[str, Any] = {
        k: getattr(req, k)
        for k in ("description", "threshold", "templates", "ensemble")
        if k in req.model_fields_set
    }
    detail = services().classify.update_class_set(
        name, changes, replace=req.classes, add=req.add, remove=req.remove_classes
    )
    return respond(view(detail))


@bp.delete("/class-sets/<name>")
@endpoint(
    "Delete a class set and its references (labels already written stay)", status=204, tags=["classify"]
)
def delete(name: str) -> tuple[str, int]:
    services().classify.delete(Kind.CLASS_SET, name)
    return "", 204


@bp.post("/class-sets/<name>/examples")
@endpoint(
    "Add uploaded example images to a class (multipart `class` and `files`)",
    response=ClassSetView,
    multipart={"class": "the class name (created when new)", "files": "one or more example images"},
    tags=["classify"],
)
def add_examples(name: str) -> tuple[Response, int]:
    class_name = request.form.get("class")
    if not class_name:
        raise InvalidInput("multipart field `class` is required")
    files = uploaded_files(request, "files", "file")
    return respond(view(services().classify.add_examples(Kind.CLASS_SET, name, class_name, files)))


@bp.post("/class-sets/<name>/embeddings")
@endpoint(
    'Add raw embeddings: {"class": [vector] or [[vector], ...]}; each vector must have the model\'s '
    "dimension",
    response=ClassSetView,
    tags=["classify"],
)
@large_json
def add_embeddings(name: str) -> tuple[Response, int]:
    raw = parse_raw_upload(json_body())
    return respond(view(services().classify.add_embeddings(name, raw)))


@bp.post("/class-sets/<name>/reencode")
@endpoint(
    "Re-encode the references for this service's model (done automatically on use when the class "
    "set's collection moved to it)",
    response=ClassSetView,
    tags=["classify"],
)
def reencode_set(name: str) -> tuple[Response, int]:
    return respond(view(services().classify.reencode(name)))


@bp.post("/class-sets/<name>/label")
@endpoint(
    "Label every image of the class set's collection from stored vectors (a job; re-run it after the "
    "class set changes)",
    body=LabelRequest,
    response=LabelJob,
    status=202,
    tags=["classify"],
)
def label(name: str) -> tuple[Response, int]:
    req = parse(LabelRequest, json_body()) if request.get_data() else LabelRequest()
    started = services().classify.label_class_set(
        name, threshold=req.threshold, multi_label=req.multi_label, request_id=current_request_id()
    )
    return respond(*label_job(started))


def _classify_request() -> tuple[ClassifyRequest, bytes | None]:
    if request.mimetype == "multipart/form-data":
        fields: dict[str, Any] = {k: v for k, v in request.form.items() if k not in {"boxes"} and v != ""}
        boxes = form_json("boxes")
        if boxes is not None:
            fields["boxes"] = boxes
        req = parse(ClassifyRequest, fields)
        upload = request.files.get("image")
        if upload is not None and req.image_id:
            raise InvalidInput("give either an uploaded `image` or an `image_id`, not both")
        return req, upload.read() if upload is not None else None
    req = parse(ClassifyRequest, json_body())
    return req, None


@bp.post("/classify")
@endpoint(
    "Classify an image (upload or stored id), or each of its regions, against a class set: ranked "
    "classes with cosine scores, softmax probabilities, the margin, the matching reference, and "
    "`other` below the threshold",
    body=ClassifyRequest,
    response=ClassifyResponse,
    multipart={
        "image": "the image",
        "class_set": "class set name",
        "boxes": "JSON list of [x1, y1, x2, y2]",
        "box_format": "auto | pixels | normalized",
        "top_k": "int",
        "threshold": "float",
    },
    tags=["classify"],
)
def classify() -> tuple[Response, int]:
    started = time.perf_counter()
    req, data = _classify_request()
    done = services().classify.classify(
        req.class_set,
        data=data,
        image_id=req.image_id,
        boxes=req.boxes,
        box_format=req.box_format,
        top_k=req.top_k,
        threshold=req.threshold,
    )
    record = done.scorer.record
    return respond(
        ClassifyResponse(
            class_set=record.name,
            model_id=record.model_id,
            version=record.version,
            threshold=done.threshold,
            logit_scale=record.logit_scale,
            logit_bias=record.logit_bias,
            image_id=req.image_id,
            width=done.width,
            height=done.height,
            predictions=[
                PredictionView.of(done.scorer, p, b)
                for p, b in zip(done.predictions, done.boxes, strict=True)
            ],
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )
    )
