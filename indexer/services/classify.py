"""The classification use cases: class sets and classifiers (create, change, delete, example uploads,
raw embeddings, re-encode), classify an image or its regions, calibrate a classifier, apply it, and
start bulk-label jobs through the JobQueue port.

Routes and benchmarks call these and nothing else of indexer.classify; the types they use are
re-exported here. The rules live here once:
a class set follows its collection's model (re-encoded on use), a classifier and the collection it
scores agree on the model (`require_model`, ModelMismatch 409), an image to classify that is not
stored is NotFound (404), a stored original that is gone is MissingOriginal (404).

Requests to Weaviate: no schema check (the schema is ensured at start-up, and by the writers that may
be the first user of a model); the references of a class set are read once per version and process
(`ScorerCache`). A classify by `image_id` reads the class set's record, the collection's binding and
the image's vector: three queries (tests/integration/test_classify_requests.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from indexer.classify import manage
from indexer.classify.boxes import BoxFormat
from indexer.classify.calibration import CalibrationResult, ThresholdStats, calibrate
from indexer.classify.inputs import Inputs, image_inputs
from indexer.classify.manage import ensure_model, reencode
from indexer.classify.references import ClassDef, decode_for_model, parse_raw_upload, stored_vectors
from indexer.classify.scorer import Scorer, ScorerCache
from indexer.classify.scoring import TOLERANCE, Prediction
from indexer.classify.store import (
    Calibration,
    ClassSetRecord,
    ClassStore,
    Kind,
    Reference,
    calibration_record,
)
from indexer.errors import InvalidInput, require_model
from indexer.pipeline.labelling import JOB_KIND, plan_label_job
from indexer.services.backends import Classifying
from indexer.services.jobs import JobsService
from indexer.services.queue import TaskKind
from indexer.store.collections import CollectionInfo
from indexer.store.images import ImageStore, in_collection

__all__ = [  # the classification types that the routes use, through this door
    "BoxFormat",
    "Calibration",
    "ClassDef",
    "ClassSetDetail",
    "ClassSetRecord",
    "ClassifyService",
    "Kind",
    "LabelJobStarted",
    "Prediction",
    "Reference",
    "Scorer",
    "ThresholdStats",
    "parse_raw_upload",
]

Files = list[tuple[str, bytes]]  # (file name, bytes) of uploaded images


@dataclass
class LabelJobStarted:
    job_id: str
    total: int


@dataclass(frozen=True)
class ClassSetDetail:
    """A class set or classifier with its references (what the API shows of one)."""

    record: ClassSetRecord
    refs: list[Reference]


@dataclass(frozen=True)
class Classified:
    scorer: Scorer
    predictions: list[Prediction]
    boxes: list[tuple[int, int, int, int] | None]
    threshold: float | None
    width: int | None
    height: int | None


@dataclass
class ScoredExample:
    label: bool
    score: float
    image_id: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class Calibrated:
    record: ClassSetRecord
    result: CalibrationResult
    examples: list[ScoredExample]
    applied: bool


@dataclass(frozen=True)
class Verdict:
    score: float
    match: bool
    reference: dict[str, Any]
    image_id: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class Applied:
    record: ClassSetRecord
    threshold: float
    verdicts: list[Verdict]
    total: int | None = None  # collection: every match, when known


@dataclass
class ClassifyService:
    backends: Classifying
    jobs: JobsService
    scorers: ScorerCache = field(default_factory=ScorerCache)

    def class_store(self) -> ClassStore:
        return ClassStore(self.backends.weaviate)

    # -- reading ---------------------------------------------------------------------------------
    def detail(self, kind: Kind, name: str) -> ClassSetDetail:
        return self._detail(self.class_store().get(kind, name))

    def all(self, kind: Kind, collection: str | None = None) -> list[ClassSetDetail]:
        return [self._detail(record) for record in self.class_store().all(kind, collection)]

    def scorer(self, kind: Kind, name: str) -> Scorer:
        """A class set (re-encoded first if its collection moved model) or a classifier, ready to score."""
        return self._scorer(kind, name)[0]

    # -- class sets ------------------------------------------------------------------------------
    def create_class_set(
        self,
        name: str,
        collection: str,
        *,
        description: str = "",
        threshold: float | None = None,
        templates: list[str] | None = None,
        ensemble: bool = False,
        classes: dict[str, ClassDef] | None = None,
    ) -> ClassSetDetail:
        """A class set bound to a collection whose model this service runs (else ModelMismatch)."""
        b = self.backends
        info = b.encodable_collection(collection)
        record = manage.create(
            self.class_store(),
            b.encoder,
            b.image_store(info),
            kind=Kind.CLASS_SET,
            name=name,
            collection=info.name,
            description=description,
            threshold=threshold,
            templates=templates,
            ensemble=ensemble,
            classes=classes or {},
        )
        return self._detail(record)

    def update_class_set(
        self,
        name: str,
        changes: dict[str, Any],
        *,
        replace: dict[str, ClassDef] | None = None,
        add: dict[str, ClassDef] | None = None,
        remove: list[str] | None = None,
    ) -> ClassSetDetail:
        """``changes``: description, threshold, templates, ensemble (only the keys given)."""
        b = self.backends
        store = self.class_store()
        record, info = self._following(store, store.get(Kind.CLASS_SET, name))
        record = manage.update(
            store,
            b.encoder,
            b.image_store(info),
            record,
            changes,
            replace=replace,
            add=add,
            remove=remove,
        )
        return self._detail(record)

    def reencode(self, name: str) -> ClassSetDetail:
        """Re-encode a class set's references for this service's model; its collection must use it
        (else ModelMismatch, 409, also when the set is already on this model: it follows its collection)."""
        b = self.backends
        store = self.class_store()
        record = store.get(Kind.CLASS_SET, name)
        info = b.encodable_collection(record.collection)
        if record.model_id != b.model_id:
            record = reencode(
                store, b.encoder, b.image_store(info), b.blobs, record, b.settings.max_image_pixels
            )
        return self._detail(record)

    def classify(
        self,
        class_set: str,
        *,
        data: bytes | None = None,
        image_id: str | None = None,
        boxes: list[list[float]] | None = None,
        box_format: BoxFormat = "auto",
        top_k: int = 5,
        threshold: float | None = None,
    ) -> Classified:
        """Classify an upload or a stored image (by its stored vector), or each of its regions."""
        if data is None and image_id is None:
            raise InvalidInput("give an uploaded `image` (multipart) or an `image_id`")
        b = self.backends
        scorer, info = self._scorer(Kind.CLASS_SET, class_set)
        assert info is not None
        inputs: Inputs = image_inputs(
            b.encoder,
            b.image_store(info),
            b.blobs,
            b.settings.max_image_pixels,
            data=data,
            image_id=image_id,
            boxes=boxes,
            box_format=box_format,
        )
        predictions = scorer.predict(inputs.vectors, top_k, threshold)
        shown: list[tuple[int, int, int, int] | None] = list(inputs.boxes) if inputs.boxes else [None]
        return Classified(
            scorer=scorer,
            predictions=predictions,
            boxes=shown,
            threshold=scorer.record.threshold if threshold is None else threshold,
            width=inputs.width,
            height=inputs.height,
        )

    def label_class_set(
        self, name: str, *, threshold: float | None, multi_label: bool, request_id: str | None = None
    ) -> LabelJobStarted:
        scorer = self.scorer(Kind.CLASS_SET, name)
        return self._start_label_job(
            scorer, scorer.record.collection, threshold, multi_label=multi_label, request_id=request_id
        )

    # -- both kinds ------------------------------------------------------------------------------
    def delete(self, kind: Kind, name: str) -> None:
        store = self.class_store()
        store.delete(store.get(kind, name))

    def add_examples(self, kind: Kind, name: str, class_name: str, files: Files) -> ClassSetDetail:
        """Uploaded example images of a class (a classifier has one class: its own name)."""
        b = self.backends
        store = self.class_store()
        record = manage.add_examples(
            store, b.encoder, b.blobs, store.get(kind, name), class_name, files, b.settings.max_image_pixels
        )
        return self._detail(record)

    def add_embeddings(self, name: str, raw: dict[str, list[list[float]]]) -> ClassSetDetail:
        store = self.class_store()
        record = manage.add_embeddings(store, self.backends.encoder, store.get(Kind.CLASS_SET, name), raw)
        return self._detail(record)

    # -- classifiers -----------------------------------------------------------------------------
    def create_classifier(
        self,
        name: str,
        *,
        query: str | None = None,
        image_ids: list[str] | None = None,
        vectors: list[list[float]] | None = None,
        description: str = "",
        threshold: float | None = None,
        templates: list[str] | None = None,
        ensemble: bool = False,
    ) -> ClassSetDetail:
        """A yes/no classifier: one class, its own name, from a text query, stored examples of `yes` and
        raw embeddings; the query is used as it is unless templates are given."""
        b = self.backends
        record = manage.create(
            self.class_store(),
            b.encoder,
            self._own_images(),
            kind=Kind.CLASSIFIER,
            name=name,
            description=description,
            threshold=threshold,
            templates=templates if templates is not None else ["{}"],
            ensemble=ensemble,
            classes={name: _definition(query, image_ids, vectors)},
        )
        return self._detail(record)

    def update_classifier(
        self,
        name: str,
        changes: dict[str, Any],
        *,
        query: str | None = None,
        image_ids: list[str] | None = None,
        vectors: list[list[float]] | None = None,
    ) -> ClassSetDetail:
        """``changes``: description, threshold. A query, image ids or vectors given (any of them) replace
        the classifier's references together."""
        store = self.class_store()
        record = store.get(Kind.CLASSIFIER, name)
        replace: dict[str, ClassDef] = {}
        if query is not None or image_ids is not None or vectors is not None:
            replace[name] = _definition(query, image_ids, vectors)
        record = manage.update(
            store, self.backends.encoder, self._own_images(), record, changes, replace=replace
        )
        return self._detail(record)

    def calibrate(
        self,
        name: str,
        *,
        examples: list[tuple[str, bool]],
        positives: Files,
        negatives: Files,
        target_precision: float | None,
        apply: bool,
    ) -> Calibrated:
        """Score labelled examples (stored ids, uploads) with the classifier, sweep the thresholds, pick
        max-F1 or the lowest meeting ``target_precision``; with ``apply`` store the threshold and the
        figures with the classifier (a new version)."""
        b = self.backends
        store = self.class_store()
        record = store.get(Kind.CLASSIFIER, name)
        # before its references are loaded: those of another model's classifier are not this service's
        require_model(f"classifier {name!r}", record.model_id, b.model_id)
        scorer = self.scorers.get(store, record)
        scored: list[ScoredExample] = []
        parts: list[NDArray[np.float32]] = []
        if examples:
            ids = [image_id for image_id, _ in examples]
            found = stored_vectors(self._own_images(), ids)
            parts.append(np.stack([found[i] for i in ids]))
            scored += [ScoredExample(image_id=i, label=label, score=0.0) for i, label in examples]
        uploads = [(f, d, True) for f, d in positives] + [(f, d, False) for f, d in negatives]
        if uploads:
            parts.append(self._encode_uploads([(f, d) for f, d, _ in uploads]))
            scored += [ScoredExample(file=f, label=label, score=0.0) for f, _, label in uploads]
        if not scored:
            raise InvalidInput(
                "no labelled examples: give `examples` [{image_id, label}] or upload "
                "`positive` and `negative` files"
            )
        labels = [s.label for s in scored]
        scores = [float(x) for x in scorer.scores(np.concatenate(parts))[:, 0]]
        result = calibrate(scores, labels, target_precision)
        for example, score in zip(scored, result.scores, strict=True):
            example.score = score  # unrounded: the thresholds are these exact values
        if apply:
            record = record.model_copy()
            record.threshold = result.chosen.threshold
            record.calibration = calibration_record(record, result, labels, target_precision)
            record = self.class_store().save(record)
        return Calibrated(record=record, result=result, examples=scored, applied=apply)

    def apply(
        self,
        name: str,
        *,
        image_ids: list[str] | None = None,
        files: Files | None = None,
        collection: str | None = None,
        threshold: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Applied:
        """A classifier's verdicts on stored ids, uploads or (matches only, best first) a collection."""
        store = self.class_store()
        record = store.get(Kind.CLASSIFIER, name)
        cut = _threshold(record, threshold)
        if sum([bool(files), bool(image_ids), collection is not None]) != 1:
            raise InvalidInput("give exactly one of: `image_ids`, uploaded `files`, or a `collection`")
        if files:  # uploads are encoded by this service: checked before the references are loaded
            require_model(f"classifier {name!r}", record.model_id, self.backends.model_id)
        scorer = self.scorers.get(store, record)
        if files:
            vectors = self._encode_uploads(files)
            return Applied(record, cut, _verdicts(scorer, vectors, cut, [{"file": f} for f, _ in files]))
        if image_ids:
            found = stored_vectors(ImageStore(self.backends.weaviate, record.model_id), image_ids)
            vectors = np.stack([found[i] for i in image_ids])
            return Applied(record, cut, _verdicts(scorer, vectors, cut, [{"image_id": i} for i in image_ids]))
        assert collection is not None
        verdicts, total = self._collection_matches(scorer, collection, cut, limit, offset)
        return Applied(record, cut, verdicts, total)

    def label_with_classifier(
        self, name: str, collection: str, *, threshold: float | None, request_id: str | None = None
    ) -> LabelJobStarted:
        scorer = self.scorer(Kind.CLASSIFIER, name)
        info = self.collection_for(scorer.record, collection)
        _threshold(scorer.record, threshold)
        return self._start_label_job(scorer, info.name, threshold, multi_label=False, request_id=request_id)

    # -- rules -----------------------------------------------------------------------------------
    def collection_for(self, record: ClassSetRecord, collection: str) -> CollectionInfo:
        """The collection, when its vectors are of the classifier's model (else ModelMismatch, 409)."""
        info = self.backends.collection(collection)
        require_model(
            f"collection {info.name!r}", info.model_id, record.model_id, by=f"{record.noun} {record.name!r}"
        )
        return info

    def start_label_job(
        self,
        record: ClassSetRecord,
        collection: str,
        *,
        threshold: float | None,
        multi_label: bool,
        request_id: str | None = None,
    ) -> LabelJobStarted:
        """Plan a bulk-label job over the collection's stored vectors and enqueue its chunks."""
        scorer = self.scorers.get(self.class_store(), record)
        return self._start_label_job(
            scorer, collection, threshold, multi_label=multi_label, request_id=request_id
        )

    # -- the parts -------------------------------------------------------------------------------
    def _detail(self, record: ClassSetRecord) -> ClassSetDetail:
        return ClassSetDetail(record, self.class_store().references(record)[0])

    def _own_images(self) -> ImageStore:
        """This service's model's images (where stored example ids of a classifier are looked up)."""
        return ImageStore(self.backends.weaviate, self.backends.model_id)

    def _scorer(self, kind: Kind, name: str) -> tuple[Scorer, CollectionInfo | None]:
        store = self.class_store()
        record = store.get(kind, name)  # 1 query
        info = None
        if kind is Kind.CLASS_SET:
            record, info = self._following(store, record)  # 1 query
        return self.scorers.get(store, record), info  # the references: once per version

    def _following(self, store: ClassStore, record: ClassSetRecord) -> tuple[ClassSetRecord, CollectionInfo]:
        """A class set and its collection, the set re-encoded first if the collection moved to the
        model this service runs (ModelMismatch if it moved to another)."""
        b = self.backends
        info = b.collection(record.collection)
        if info.model_id != record.model_id:
            record = ensure_model(
                store,
                b.encoder,
                b.image_store(info),
                b.blobs,
                record,
                b.settings.max_image_pixels,
                collection_model=info.model_id,
            )
        return record, info

    def _encode_uploads(self, files: Files) -> NDArray[np.float32]:
        encoder = self.backends.encoder
        decodes = []
        for filename, data in files:
            try:
                decodes.append(decode_for_model(data, encoder, self.backends.settings.max_image_pixels))
            except InvalidInput as exc:
                raise InvalidInput(f"{filename}: {exc.message}", {"file": filename}) from exc
        return encoder.encode_images(decodes)

    def _collection_matches(
        self, scorer: Scorer, collection: str, threshold: float, limit: int, offset: int
    ) -> tuple[list[Verdict], int | None]:
        """The images of the collection at or above the threshold, best first: a near-vector query with a
        distance cut per reference, merged by the best score (the classifier's score is the max).

        Each reference asks for offset + limit hits, not Weaviate's 10,000: an image on the page has its
        best reference among that reference's first offset + limit hits, so the page is exact. The total
        is known only when no reference filled its window (else None). The window and the hits over all
        references are capped (CLASSIFY_APPLY_MAX_WINDOW, CLASSIFY_APPLY_MAX_CANDIDATES)."""
        settings = self.backends.settings
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
                f"classifier {scorer.record.name!r} has {references} references: {references} x {window} "
                f"hits is over the limit of {settings.classify_apply_max_candidates} "
                "(CLASSIFY_APPLY_MAX_CANDIDATES); ask for a smaller page, or label the collection with "
                "POST /classifiers/<name>/label",
                {"references": references, "window": window, "limit": settings.classify_apply_max_candidates},
            )
        info = self.collection_for(scorer.record, collection)
        images = self.backends.image_store(info)
        where = in_collection(info.name)
        best: dict[str, tuple[float, int]] = {}
        complete = True
        for row, vector in enumerate(scorer.references.vectors):
            hits = images.near_vector(vector, where, window, 0, threshold - TOLERANCE)
            complete = complete and len(hits) < window
            for hit in hits:
                if hit.score >= threshold - TOLERANCE and hit.score > best.get(hit.image.id, (-2.0, 0))[0]:
                    best[hit.image.id] = (hit.score, int(scorer.references.order[row]))
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))
        page = [
            Verdict(image_id=image_id, score=score, match=True, reference=scorer.explain(ref))
            for image_id, (score, ref) in ranked[offset : offset + limit]
        ]
        return page, len(ranked) if complete else None

    def _start_label_job(
        self,
        scorer: Scorer,
        collection: str,
        threshold: float | None,
        *,
        multi_label: bool,
        request_id: str | None,
    ) -> LabelJobStarted:
        items, options = plan_label_job(
            self.class_store(), scorer, collection, threshold=threshold, multi_label=multi_label
        )
        job_id = self.jobs.start(
            JOB_KIND,
            collection,
            items,
            task=TaskKind.LABEL_CHUNK,
            chunk_size=self.backends.settings.label_chunk_size,
            options=options,
            request_id=request_id,
        )
        return LabelJobStarted(job_id=job_id, total=len(items))


def _definition(
    query: str | None, image_ids: list[str] | None, vectors: list[list[float]] | None
) -> ClassDef:
    """A classifier's one class: its query as the prompt, its example ids and raw vectors."""
    return ClassDef(prompts=[query] if query else [], image_ids=image_ids or [], vectors=vectors or [])


def _threshold(record: ClassSetRecord, given: float | None) -> float:
    threshold = given if given is not None else record.threshold
    if threshold is None:
        raise InvalidInput(f"classifier {record.name!r} has no threshold: give one, or calibrate it first")
    return threshold


def _verdicts(
    scorer: Scorer, vectors: NDArray[np.floating], threshold: float, keys: list[dict[str, str]]
) -> list[Verdict]:
    predictions = scorer.predict(vectors, top_k=1, threshold=threshold)
    return [
        Verdict(**key, score=p.score, match=not p.is_other, reference=scorer.explain(p.ranked[0].reference))
        for key, p in zip(keys, predictions, strict=True)
    ]
