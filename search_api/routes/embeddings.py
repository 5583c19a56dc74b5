"""Embeddings as a product: embed texts and images, compare a subject with prompts."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from indexer.errors import InvalidInput, PayloadTooLarge
from indexer.services.embeddings import EmbeddingsService
from search_api.json_limits import large_json
from search_api.services import services
from search_api.validation import endpoint, json_body, parse

bp = Blueprint("embeddings", __name__)


class ImageRef(BaseModel):
    """One image: base64 bytes or an http(s) URL (fetched under the same limits as ingest)."""

    model_config = ConfigDict(extra="forbid")

    base64: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ImageRef:
        if (self.base64 is None) == (self.url is None):
            raise ValueError("give exactly one of `base64` or `url`")
        return self


class Item(ImageRef):
    """A text, or an image as base64 or URL."""

    text: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Item:
        if sum(v is not None for v in (self.text, self.base64, self.url)) != 1:
            raise ValueError("give exactly one of `text`, `base64` or `url`")
        return self


class EmbedTextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1)
    normalize: bool = True


class EmbedImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: list[ImageRef] = Field(min_length=1)
    normalize: bool = True


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: Item
    prompts: list[Item] = Field(min_length=1)


class TextEmbedding(BaseModel):
    vector: list[float]
    truncated: bool = Field(description="the text was cut to the model's context length (77 tokens)")
    n_tokens: int


class ImageEmbedding(BaseModel):
    vector: list[float]
    format: str
    width: int
    height: int


class EmbedTextResponse(BaseModel):
    model_id: str
    dim: int
    normalized: bool
    embeddings: list[TextEmbedding]


class EmbedImageResponse(BaseModel):
    model_id: str
    dim: int
    normalized: bool
    embeddings: list[ImageEmbedding]


class CompareEntry(BaseModel):
    index: int
    kind: str
    similarity: float
    probability: float


class CompareResponse(BaseModel):
    model_id: str
    logit_scale: float
    logit_bias: float | None = Field(default=None, description="SigLIP models only")
    scoring: str = Field(
        default="softmax",
        description="softmax: probabilities over the prompts at the logit scale (CLIP); sigmoid: each "
        "prompt's own sigmoid(logit_scale * similarity + logit_bias) (SigLIP)",
    )
    subject: dict[str, str]
    results: list[CompareEntry]
    best: int


def _check_urls(svc: EmbeddingsService, refs: list[ImageRef]) -> float:
    """Parse every URL of a request before any is downloaded; the deadline that all downloads share."""
    return svc.check_urls(ref.url for ref in refs if ref.url is not None)


def _image_bytes(svc: EmbeddingsService, ref: ImageRef, deadline: float | None = None) -> bytes:
    if ref.url is not None:
        return svc.fetch(ref.url, deadline)
    try:
        return base64.b64decode(ref.base64 or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"`base64` is not valid base64: {exc}") from exc


def _item(svc: EmbeddingsService, item: Item, deadline: float) -> str | bytes:
    return item.text if item.text is not None else _image_bytes(svc, item, deadline)


def _uploads(field: str) -> list[bytes]:
    files = request.files.getlist(field)
    for upload in files:
        EmbeddingsService.check_upload(upload.mimetype or None)
    return [upload.read() for upload in files]


def _normalize_flag() -> bool:
    return request.form.get("normalize", "true").lower() not in {"false", "0", "no"}


@bp.post("/embed/text")
@endpoint("Embed texts", body=EmbedTextRequest, response=EmbedTextResponse, tags=["embeddings"])
def embed_text() -> Response:
    req = parse(EmbedTextRequest, json_body())
    result = services().embeddings.texts(req.texts, req.normalize)
    return jsonify(result.to_dict())


@bp.post("/embed/image")
@endpoint(
    "Embed images: multipart `images` files, or JSON base64 / URLs",
    body=EmbedImageRequest,
    response=EmbedImageResponse,
    multipart={"images": "one or more image files", "normalize": "true or false"},
    tags=["embeddings"],
)
@large_json
def embed_image() -> Response:
    svc = services().embeddings
    if request.mimetype == "multipart/form-data":
        images, normalize = _uploads("images"), _normalize_flag()
        if not images:
            raise InvalidInput("no images: send multipart/form-data with one or more `images` parts")
    else:
        req = parse(EmbedImageRequest, json_body())
        if len(req.images) > svc.settings.max_batch:
            raise PayloadTooLarge(
                f"{len(req.images)} images in one request, over the limit of {svc.settings.max_batch}"
            )
        deadline = _check_urls(svc, list(req.images))
        images, normalize = [_image_bytes(svc, ref, deadline) for ref in req.images], req.normalize
    result = svc.images(images, normalize)
    return jsonify(result.to_dict())


@bp.post("/compare")
@endpoint(
    "Compare a subject (text or image) with prompts (texts or images): cosine similarities and softmax "
    "probabilities at the model's logit scale",
    body=CompareRequest,
    response=CompareResponse,
    multipart={"subject": "the subject image", "prompts": "JSON list of texts"},
    tags=["embeddings"],
)
@large_json
def compare_route() -> Response:
    svc = services().embeddings
    subject: str | bytes
    prompts: list[str | bytes]
    if request.mimetype == "multipart/form-data":
        uploaded = _uploads("subject")
        if len(uploaded) != 1:
            raise InvalidInput("send exactly one `subject` image part")
        subject = uploaded[0]
        try:
            raw: Any = json.loads(request.form.get("prompts", ""))
        except ValueError as exc:
            raise InvalidInput(f"form field `prompts` must be a JSON list of texts: {exc}") from exc
        if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
            raise InvalidInput("form field `prompts` must be a non-empty JSON list of texts")
        prompts = list(raw)
    else:
        req = parse(CompareRequest, json_body())
        # The batch limit is checked before anything is downloaded, and every URL is parsed first.
        if len(req.prompts) > svc.settings.max_batch:
            raise PayloadTooLarge(
                f"{len(req.prompts)} prompts in one request, over the limit of {svc.settings.max_batch}",
                {"field": "prompts", "count": len(req.prompts), "limit": svc.settings.max_batch},
            )
        deadline = _check_urls(svc, [req.subject, *req.prompts])
        subject = _item(svc, req.subject, deadline)
        prompts = [_item(svc, p, deadline) for p in req.prompts]
    result = svc.compare(subject, prompts)
    return jsonify(result.to_dict())
