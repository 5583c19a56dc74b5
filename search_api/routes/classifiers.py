"""Yes/no classifiers (the Nomic Atlas recipe): a text query or example images plus a threshold,
calibrated on labelled examples, applied to uploads, stored ids or a whole collection."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Response, request
from pydantic import BaseModel, ConfigDict, Field

from indexer.classify import manage
from indexer.classify.calibration import ThresholdStats
from indexer.classify.references import ClassDef, decode_for_model, stored_vectors
from indexer.classify.scoring import TOLERANCE
from indexer.classify.service import Scorer, calibrate, calibration_record
from indexer.classify.store import ClassStore, Kind
from indexer.errors import InvalidInput
from indexer.search import WEAVIATE_MAX_RESULTS
from indexer.store.images import ImageStore
from search_api.routes.classify_common import (
    ClassSetView,
    LabelJob,
    LabelRequest,
    form_json,
    scorer_for,
    start_label_job,
    uploaded_files,
)
from search_api.services import Services, services
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


def _view(store: ClassStore, name: str) -> ClassSetView:
    record = store.get(Kind.CLASSIFIER, name)
    return ClassSetView.of(record, store.references(record)[0])


def _images(svc: Services) -> ImageStore:
    return ImageStore(svc.weaviate, svc.encoder.model_id)


@bp.post("/classifiers")
@endpoint(
    "Create a yes/no classifier: a text query and/or example images, plus a threshold",
    body=ClassifierCreate,
    response=ClassSetView,
    status=201,
    tags=["classifiers"],
)
def create() -> tuple[Response, int]:
    svc = services()
    req = parse(ClassifierCreate, json_body())
    definition = ClassDef(
        prompts=[req.query] if req.query else [], image_ids=req.image_ids, vectors=req.vectors
    )
    store = ClassStore(svc.weaviate)
    manage.create(
        store,
        svc.encoder,
        _images(svc),
        kind=Kind.CLASSIFIER,
        name=req.name,
        description=req.description,
        threshold=req.threshold,
        templates=req.templates if req.templates is not None else ["{}"],
        ensemble=req.ensemble,
        classes={req.name: definition},
    )
    return respond(_view(store, req.name), 201)


@bp.get("/classifiers")
@endpoint("List classifiers", response=ClassifierList, tags=["classifiers"])
def list_all() -> tuple[Response, int]:
    store = ClassStore(services().weaviate)
    records = store.all(Kind.CLASSIFIER)
    return respond(ClassifierList(classifiers=[ClassSetView.of(r, store.references(r)[0]) for r in records]))


@bp.get("/classifiers/<name>")
@endpoint(
    "A classifier with its references and calibration figures", response=ClassSetView, tags=["classifiers"]
)
def get(name: str) -> tuple[Response, int]:
    return respond(_view(ClassStore(services().weaviate), name))


@bp.patch("/classifiers/<name>")
@endpoint(
    "Change a classifier: description, threshold, or its references (query, image_ids and vectors "
    "given together replace them)",
    body=ClassifierUpdate,
    response=ClassSetView,
    tags=["classifiers"],
)
def update(name: str) -> tuple[Response, int]:
    svc = services()
    req = parse(ClassifierUpdate, json_body())
    store = ClassStore(svc.weaviate)
    record = store.get(Kind.CLASSIFIER, name)
    fields = ("description", "threshold")
    changes: dict[str, Any] = {k: getattr(req, k) for k in fields if k in req.model_fields_set}
    replace = {}
    if req.query is not None or req.image_ids is not None or req.vectors is not None:
        replace[name] = ClassDef(
            prompts=[req.query] if req.query else [], image_ids=req.image_ids or [], vectors=req.vectors or []
        )
    manage.update(store, svc.encoder, _images(svc), record, changes, replace=replace)
    return respond(_view(store, name))


@bp.delete("/classifiers/<name>")
@endpoint("Delete a classifier", status=204, tags=["classifiers"])
def delete(name: str) -> tuple[str, int]:
    store = ClassStore(services().weaviate)
    store.delete(store.get(Kind.CLASSIFIER, name))
    return "", 204


@bp.post("/classifiers/<name>/examples")
@endpoint(
    "Add uploaded example images of `yes` (multipart `files`)",
    response=ClassSetView,
    multipart={"files": "example images"},
    tags=["classifiers"],
)
def add_examples(name: str) -> tuple[Response, int]:
    svc = services()
    store = ClassStore(svc.weaviate)
    record = store.get(Kind.CLASSIFIER, name)
    files = uploaded_files(request, "files", "file")
    manage.add_examples(store, svc.encoder, svc.blobs, record, name, files, svc.settings.max_image_pixels)
    return respond(_view(store, name))


def _encode_uploads(svc: Services, files: list[tuple[str, bytes]]) -> np.ndarray:
    pixels = []
    for filename, data in files:
        try:
            pixels.append(decode_for_model(data, svc.encoder, svc.settings.max_image_pixels))
        except InvalidInput as exc:
            raise InvalidInput(f"{filename}: {exc.message}", {"file": filename}) from exc
    return svc.encoder.encode_images(pixels)


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
    svc = services()
    req, positives, negatives = _calibrate_request()
    scorer = scorer_for(svc, Kind.CLASSIFIER, name)
    if scorer.record.model_id != svc.encoder.model_id:
        raise InvalidInput(
            f"classifier {name!r} uses model {scorer.record.model_id}; this service runs "
            f"{svc.encoder.model_id}"
        )
    scored: list[ScoredExample] = []
    parts = []
    if req.examples:
        ids = [e.image_id for e in req.examples]
        found = stored_vectors(_images(svc), ids)
        parts.append(np.stack([found[i] for i in ids]))
        scored += [ScoredExample(image_id=e.image_id, label=e.label, score=0.0) for e in req.examples]
    uploads = [(f, d, True) for f, d in positives] + [(f, d, False) for f, d in negatives]
    if uploads:
        parts.append(_encode_uploads(svc, [(f, d) for f, d, _ in uploads]))
        scored += [ScoredExample(file=f, label=label, score=0.0) for f, _, label in uploads]
    if not scored:
        raise InvalidInput(
            "no labelled examples: give `examples` [{image_id, label}] or upload "
            "`positive` and `negative` files"
        )
    labels = [s.label for s in scored]
    result = calibrate(scorer, np.concatenate(parts), labels, req.target_precision)
    for example, score in zip(scored, result.scores, strict=True):
        example.score = score  # unrounded: the thresholds below are these exact values
    record = scorer.record
    if req.apply:
        store = ClassStore(svc.weaviate)
        record.threshold = result.chosen.threshold
        record.calibration = calibration_record(record, result, labels, req.target_precision)
        store.save(record)
    return respond(
        CalibrationResponse(
            classifier=name,
            model_id=record.model_id,
            method=result.method,
            examples=len(labels),
            positives=sum(labels),
            chosen=result.chosen,
            thresholds=result.rows,
            scores=scored,
            applied=req.apply,
        )
    )


def _verdicts(
    scorer: Scorer, vectors: np.ndarray, threshold: float, keys: list[dict[str, str]]
) -> list[Verdict]:
    predictions = scorer.predict(vectors, top_k=1, threshold=threshold)
    return [
        Verdict(**key, score=p.score, match=not p.is_other, reference=scorer.explain(p.ranked[0].reference))
        for key, p in zip(keys, predictions, strict=True)
    ]


def _collection_matches(
    svc: Services, scorer: Scorer, collection: str, threshold: float, limit: int, offset: int
) -> tuple[list[Verdict], int | None]:
    """The images of the collection at or above the threshold, best first: a near-vector query with a
    distance cut per reference, merged by the best score (the classifier's score is the max).

    Each reference asks for offset + limit hits, not Weaviate's 10,000: an image on the page has its
    best reference among that reference's first offset + limit hits, so the page is exact. The total is
    known only when no reference filled its window (else None). The window and the hits over all
    references are capped (CLASSIFY_APPLY_MAX_WINDOW, CLASSIFY_APPLY_MAX_CANDIDATES)."""
    from weaviate.classes.query import Filter

    settings = svc.settings
    window = offset + limit
    if window > settings.classify_apply_max_window:
        raise InvalidInput(
            f"offset + limit must not exceed {settings.classify_apply_max_window} "
            "(CLASSIFY_APPLY_MAX_WINDOW); label the collection with POST /classifiers/<name>/label to "
            "score every image",
            {"offset": offset, "limit": limit, "max_window": settings.classify_apply_max_window},
        )
    references = len(scorer.references.vectors)
    if references * window > settings.classify_apply_max_candidates:
        raise InvalidInput(
            f"classifier {scorer.record.name!r} has {references} references: {references} x {window} hits "
            f"is over the limit of {settings.classify_apply_max_candidates} (CLASSIFY_APPLY_MAX_CANDIDATES); "
            "ask for a smaller page, or label the collection with POST /classifiers/<name>/label",
            {"references": references, "window": window, "limit": settings.classify_apply_max_candidates},
        )
    info = svc.collection(collection)
    if info.model_id != scorer.record.model_id:
        raise InvalidInput(
            f"collection {collection!r} uses model {info.model_id}; classifier "
            f"{scorer.record.name!r} uses {scorer.record.model_id}"
        )
    images = svc.image_store(info)
    where = Filter.by_property("collection").equal(collection)
    best: dict[str, tuple[float, int]] = {}
    complete = True
    for row, vector in enumerate(scorer.references.vectors):
        hits = images.near_vector(vector, where, window, 0, threshold - TOLERANCE)
        complete = complete and len(hits) < window
        for hit in hits:
            if hit.score >= threshold - TOLERANCE and hit.score > best.get(hit.image.id, (-2.0, 0))[0]:
                best[hit.image.id] = (hit.score, int(scorer.references.order[row]))
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))
    page = ranked[offset : offset + limit]
    return [
        Verdict(image_id=image_id, score=score, match=True, reference=scorer.explain(ref))
        for image_id, (score, ref) in page
    ], len(ranked) if complete else None


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
    svc = services()
    files: list[tuple[str, bytes]] = []
    if request.mimetype == "multipart/form-data":
        fields = {k: v for k, v in request.form.items() if v != ""}
        req = parse(ApplyRequest, fields)
        files = uploaded_files(request, "files", "file")
        if not files:
            raise InvalidInput("no files: send multipart `files`")
    else:
        req = parse(ApplyRequest, json_body())
    scorer = scorer_for(svc, Kind.CLASSIFIER, name)
    record = scorer.record
    threshold = req.threshold if req.threshold is not None else record.threshold
    if threshold is None:
        raise InvalidInput(f"classifier {name!r} has no threshold: give one, or calibrate it first")
    sources = sum([bool(files), bool(req.image_ids), req.collection is not None])
    if sources != 1:
        raise InvalidInput("give exactly one of: `image_ids`, uploaded `files`, or a `collection`")
    total = None
    if files:
        results = _verdicts(scorer, _encode_uploads(svc, files), threshold, [{"file": f} for f, _ in files])
    elif req.image_ids:
        found = stored_vectors(ImageStore(svc.weaviate, record.model_id), req.image_ids)
        vectors = np.stack([found[i] for i in req.image_ids])
        results = _verdicts(scorer, vectors, threshold, [{"image_id": i} for i in req.image_ids])
    else:
        assert req.collection is not None
        results, total = _collection_matches(svc, scorer, req.collection, threshold, req.limit, req.offset)
    return respond(
        ApplyResponse(
            classifier=name,
            model_id=record.model_id,
            threshold=threshold,
            results=results,
            count=len(results),
            total=total,
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
    svc = services()
    req = parse(ClassifierLabelRequest, json_body())
    scorer = scorer_for(svc, Kind.CLASSIFIER, name)
    info = svc.collection(req.collection)
    if info.model_id != scorer.record.model_id:
        raise InvalidInput(
            f"collection {info.name!r} uses model {info.model_id}; classifier {name!r} uses "
            f"{scorer.record.model_id}"
        )
    if (req.threshold if req.threshold is not None else scorer.record.threshold) is None:
        raise InvalidInput(f"classifier {name!r} has no threshold: give one, or calibrate it first")
    body, status = start_label_job(svc, scorer.record, info.name, LabelRequest(threshold=req.threshold))
    return respond(body, status)
