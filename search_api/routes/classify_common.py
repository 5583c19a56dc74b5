"""Views and request helpers shared by the class-set, classifier and classify routes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Request, request, url_for
from pydantic import BaseModel, Field

from indexer.errors import InvalidInput
from indexer.services.classify import (
    Calibration,
    ClassSetDetail,
    ClassSetRecord,
    LabelJobStarted,
    Prediction,
    Reference,
    Scorer,
)

MAX_FILES = 256


class ReferenceView(BaseModel):
    kind: str
    text: str = ""
    prompt: str = ""
    image_id: str = ""
    sha256: str = ""
    filename: str = ""
    position: int = 0


class ClassView(BaseModel):
    name: str
    references: list[ReferenceView]


class ClassSetView(BaseModel):
    name: str
    kind: str
    collection: str = Field(description="class sets: the collection it is bound to; classifiers: empty")
    model_id: str
    version: int
    created_at: datetime
    updated_at: datetime
    description: str
    threshold: float | None
    templates: list[str]
    ensemble: bool
    logit_scale: float
    logit_bias: float | None = None
    classes: list[ClassView]
    labelled_names: list[str]
    calibration: Calibration | None = None
    dropped: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def of(cls, record: ClassSetRecord, refs: list[Reference] | None) -> ClassSetView:
        by_class: dict[str, list[ReferenceView]] = {name: [] for name in record.classes}
        for ref in refs or []:
            if ref.class_name in by_class:
                by_class[ref.class_name].append(
                    ReferenceView(**ref.model_dump(mode="json", exclude={"class_name"}))
                )
        data = record.model_dump(exclude={"classes"})
        return cls(**data, classes=[ClassView(name=n, references=r) for n, r in by_class.items()])


class RankedClass(BaseModel):
    name: str
    score: float = Field(description="cosine similarity: the best of the class's references")
    probability: float = Field(
        description="CLIP: softmax over all classes at the model's logit scale; SigLIP (logit_bias set): "
        "the class's own sigmoid(logit_scale * score + logit_bias)"
    )
    match: dict[str, Any] = Field(description="the reference that gave the score: prompt or example image")


class PredictionView(BaseModel):
    box: list[int] | None = Field(default=None, description="the pixel box [x1, y1, x2, y2] classified")
    label: str = Field(description="the best class, or `other` when its score is below the threshold")
    is_other: bool
    score: float
    probability: float
    margin: float | None = Field(description="top-1 minus top-2 cosine score")
    ranked: list[RankedClass]

    @classmethod
    def of(cls, scorer: Scorer, prediction: Prediction, box: tuple[int, ...] | None) -> PredictionView:
        return cls(
            box=list(box) if box is not None else None,
            label=prediction.label,
            is_other=prediction.is_other,
            score=prediction.score,
            probability=prediction.probability,
            margin=prediction.margin,
            ranked=[
                RankedClass(
                    name=r.name, score=r.score, probability=r.probability, match=scorer.explain(r.reference)
                )
                for r in prediction.ranked
            ],
        )


class LabelRequest(BaseModel):
    threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="overrides the stored threshold for this run"
    )
    multi_label: bool = Field(default=False, description="every class at or above the threshold")


class LabelJob(BaseModel):
    job_id: str
    status_url: str
    total: int


def uploaded_files(req: Request, *names: str) -> list[tuple[str, bytes]]:
    files = [f for name in names for f in req.files.getlist(name)]
    if len(files) > MAX_FILES:
        raise InvalidInput(f"at most {MAX_FILES} files per request")
    return [(f.filename or f"upload-{i}", f.read()) for i, f in enumerate(files)]


def form_json(name: str, default: Any = None) -> Any:
    raw = request.form.get(name)
    if raw is None or raw == "":
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"form field `{name}` is not valid JSON: {exc}") from exc


def view(detail: ClassSetDetail) -> ClassSetView:
    return ClassSetView.of(detail.record, detail.refs)


def label_job(started: LabelJobStarted) -> tuple[LabelJob, int]:
    job = LabelJob(
        job_id=started.job_id, status_url=url_for("jobs.get", job_id=started.job_id), total=started.total
    )
    return job, 202
