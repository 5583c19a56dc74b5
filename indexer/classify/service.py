"""Classification use cases over plain values: scorers, predictions with explanations, region crops,
calibration, and re-encoding a class set for another model."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from cachetools import LRUCache
from numpy.typing import NDArray

from indexer.blobs import BlobStore
from indexer.classify.boxes import BoxFormat, crop, resolve_boxes
from indexer.classify.calibration import ThresholdStats, choose, sweep
from indexer.classify.references import Encoder, concat, prompt_references, stored_vectors
from indexer.classify.scoring import Prediction, References, class_scores, predict
from indexer.classify.store import Calibration, ClassSetRecord, ClassStore, Reference, RefKind
from indexer.errors import Conflict, InvalidInput, MissingOriginal, NotFound
from indexer.images import decode_image
from indexer.services.models import require_model
from indexer.store.images import ImageStore, check_image_id
from indexer.user_collections import get_collection

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Scorer:
    """A class set (or classifier) ready to score vectors of its model."""

    record: ClassSetRecord
    refs: list[Reference]
    references: References

    def predict(
        self, vectors: NDArray[np.floating], top_k: int = 5, threshold: float | None = None
    ) -> list[Prediction]:
        return predict(
            vectors,
            self.references,
            logit_scale=self.record.logit_scale,
            logit_bias=self.record.logit_bias,
            threshold=self.record.threshold if threshold is None else threshold,
            top_k=top_k,
        )

    def scores(self, vectors: NDArray[np.floating]) -> NDArray[np.float32]:
        return class_scores(vectors, self.references)[0]

    def with_record(self, record: ClassSetRecord) -> Scorer:
        """The same references under the caller's copy of the record (which the caller may change)."""
        return Scorer(record=record, refs=self.refs, references=self.references)

    def explain(self, index: int) -> dict[str, Any]:
        ref = self.refs[index]
        out: dict[str, Any] = {"kind": ref.kind.value}
        if ref.kind is RefKind.PROMPT:
            out.update(prompt=ref.prompt, text=ref.text)
        elif ref.image_id:
            out.update(image_id=ref.image_id)
        elif ref.kind is RefKind.IMAGE:
            out.update(sha256=ref.sha256, filename=ref.filename)
        else:
            out.update(index=ref.position, sha256=ref.sha256)
        return out


def load_scorer(store: ClassStore, record: ClassSetRecord) -> Scorer:
    refs, vectors = store.references(record)
    if not record.classes or not refs:
        raise InvalidInput(
            f"{record.noun} {record.name!r} is empty: add prompts, example images or embeddings first",
            {"name": record.name},
        )
    index = {name: i for i, name in enumerate(record.classes)}
    keep = [i for i, ref in enumerate(refs) if ref.class_name in index]
    refs = [refs[i] for i in keep]
    references = References.build(record.classes, vectors[keep], [index[r.class_name] for r in refs])
    return Scorer(record=record, refs=refs, references=references)


class ScorerCache:
    """Scorers by owner, version, model and creation time: a class set's references are read once per
    version and process, not on every classify or label chunk. Every change of a class set saves a new
    version (a new key), including one made by another process; a set deleted and created again under
    its name has another creation time. A record still being created (version 0: its references are
    being written) is never cached."""

    def __init__(self, maxsize: int = 32) -> None:
        self._entries: LRUCache[tuple[str, int, str, datetime], Scorer] = LRUCache(maxsize)
        self._lock = threading.Lock()

    def get(self, store: ClassStore, record: ClassSetRecord) -> Scorer:
        key = (record.uuid, record.version, record.model_id, record.created_at)
        with self._lock:
            found = self._entries.get(key)
        if found is not None:
            return found.with_record(record)
        scorer = load_scorer(store, record)
        if record.version > 0:
            with self._lock:
                self._entries[key] = scorer
        return scorer


# -- inputs ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Inputs:
    vectors: NDArray[np.float32]
    boxes: list[tuple[int, int, int, int]] | None
    width: int | None = None
    height: int | None = None


def image_inputs(
    encoder: Encoder,
    images: ImageStore,
    blobs: BlobStore,
    max_pixels: int,
    *,
    data: bytes | None = None,
    image_id: str | None = None,
    boxes: list[list[float]] | None = None,
    box_format: BoxFormat = "auto",
) -> Inputs:
    """The vectors to classify: the whole image (an upload, or a stored id's stored vector), or one crop
    per box (the upload's pixels, or the stored original's from the blob store), encoded in one batch."""
    if (data is None) == (image_id is None):
        raise InvalidInput("give either an uploaded `image` or an `image_id`")
    if (data is not None or boxes is not None) and encoder.model_id != images.model_id:
        require_model(
            "the class set's collection",
            images.model_id,
            encoder.model_id,
            hint="stored ids without boxes still classify from their stored vectors",
        )
    if boxes is None:
        if data is not None:
            decoded = decode_image(data, max_pixels, min_side=encoder.min_decode_side)
            return Inputs(encoder.encode_images([decoded]), None)
        assert image_id is not None
        return Inputs(stored_vector(images, image_id)[None, :], None)
    if data is None:
        assert image_id is not None
        record, _ = images.get(check_image_id(image_id))
        data = blobs.read_original(record.sha256)
    decoded = decode_image(data, max_pixels)  # full resolution: boxes are in the original's pixels
    height, width = decoded.pixels.shape[:2]
    rects = resolve_boxes(boxes, width, height, box_format)
    crops = [crop(decoded.pixels, rect) for rect in rects]
    return Inputs(encoder.encode_images(crops), rects, width, height)


def stored_vector(images: ImageStore, image_id: str) -> NDArray[np.float32]:
    """The stored vector of the image to classify: NotFound (404) when this model's images do not hold
    it, as for every path that takes one image by id (search, similar, boxes)."""
    try:
        return stored_vectors(images, [image_id])[image_id]
    except InvalidInput as exc:
        if "unknown_image_ids" not in exc.details:
            raise  # a malformed id: 400
        raise NotFound(f"unknown image {image_id!r}", {"image_id": image_id}) from exc


# -- model moves ----------------------------------------------------------------------------------
def ensure_model(
    store: ClassStore,
    encoder: Encoder,
    images: ImageStore,
    blobs: BlobStore,
    record: ClassSetRecord,
    max_pixels: int,
    *,
    collection_model: str | None = None,
) -> ClassSetRecord:
    """A class set follows its collection: when the collection now uses another model (and this
    service runs it), the references are re-encoded for it first. ``collection_model``: the
    collection's model when the caller has just read it (else it is read here)."""
    if record.collection:
        current = collection_model
        if current is None:
            current = get_collection(store.client, record.collection, with_count=False).model_id
        if current != record.model_id:
            if current != encoder.model_id:
                require_model(
                    f"class set {record.name!r} follows its collection, which", current, encoder.model_id
                )
            return reencode(store, encoder, images, blobs, record, max_pixels)
    return record


def reencode(
    store: ClassStore,
    encoder: Encoder,
    images: ImageStore,
    blobs: BlobStore,
    record: ClassSetRecord,
    max_pixels: int,
) -> ClassSetRecord:
    """Re-encode every reference for ``encoder``'s model: prompts through its text tower, stored example
    images from their vectors under the new model (same ids: ids come from collection and content), and
    uploaded examples from the blob store. Raw embeddings belong to the old model: they are dropped and
    counted in ``dropped``."""
    require_model(
        f"{record.noun} {record.name!r} follows its collection, which",
        images.model_id,
        encoder.model_id,
    )
    old_model = record.model_id
    refs, _ = store.references(record)
    prompts: dict[str, list[str]] = {}
    for ref in refs:
        if ref.kind is RefKind.PROMPT:
            prompts.setdefault(ref.class_name, []).append(ref.prompt)
    built = [prompt_references(encoder, prompts, record.templates, record.ensemble)]
    stored = [r for r in refs if r.kind is RefKind.IMAGE and r.image_id]
    if stored:
        try:
            found = stored_vectors(images, [r.image_id for r in stored])
        except InvalidInput as exc:
            raise Conflict(
                f"cannot re-encode {record.noun} {record.name!r}: {exc.message}", exc.details
            ) from exc
        built.append((stored, np.stack([found[r.image_id] for r in stored])))
    uploads = [r for r in refs if r.kind is RefKind.IMAGE and not r.image_id]
    if uploads:
        decodes = []
        for ref in uploads:
            try:
                data = blobs.read_original(ref.sha256)
            except MissingOriginal as exc:  # the one error (404) for a stored original that is gone
                raise MissingOriginal(
                    f"cannot re-encode {record.noun} {record.name!r}: example "
                    f"{ref.filename or ref.sha256} is missing from the blob store",
                    exc.details,
                ) from exc
            decodes.append(decode_image(data, max_pixels, min_side=encoder.min_decode_side))
        built.append((uploads, encoder.encode_images(decodes)))
    new_refs, vectors = concat(built, encoder.dim)
    dropped: dict[str, int] = {}
    for ref in refs:
        if ref.kind is RefKind.RAW:
            dropped[ref.class_name] = dropped.get(ref.class_name, 0) + 1
    record.model_id = encoder.model_id
    record.logit_scale = encoder.logit_scale
    record.logit_bias = encoder.logit_bias
    record.dropped = dropped
    have = {r.class_name for r in new_refs}
    record.classes = [c for c in record.classes if c in have]
    store.add_references(record, new_refs, vectors)
    store.save(record)
    temp = record.model_copy(update={"model_id": old_model})
    store.delete_references(temp)
    log.info("re-encoded %s %s from %s to %s", record.noun, record.name, old_model, record.model_id)
    return record


# -- calibration ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationResult:
    scores: list[float]
    rows: list[ThresholdStats]
    chosen: ThresholdStats
    method: str


def calibrate(
    scorer: Scorer, vectors: NDArray[np.floating], labels: list[bool], target_precision: float | None
) -> CalibrationResult:
    """Score the labelled examples with the classifier (max cosine over its references) and sweep."""
    scores = [float(s) for s in scorer.scores(vectors)[:, 0]]
    rows = sweep(scores, labels)
    chosen = choose(rows, target_precision)
    return CalibrationResult(
        scores=scores,
        rows=rows,
        chosen=chosen,
        method="max_f1" if target_precision is None else "target_precision",
    )


def calibration_record(
    record: ClassSetRecord, result: CalibrationResult, labels: list[bool], target_precision: float | None
) -> Calibration:
    return Calibration(
        **result.chosen.model_dump(),
        model_id=record.model_id,
        method=result.method,
        target_precision=target_precision,
        examples=len(labels),
        positives=sum(labels),
        calibrated_at=datetime.now(UTC),
    )
