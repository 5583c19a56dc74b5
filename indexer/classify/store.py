"""Class sets and classifiers in Weaviate, beside the images they classify.

- `ClipsearchClassSet` (no vector): one object per class set or classifier: name, kind, the collection
  it is bound to (class sets) and its model id, a version that moves on every change, and a JSON config
  (threshold, templates, ensemble, class order, calibration figures...).
- `ClassReference_<model>`: one object per reference vector, owned by a class set or classifier:
  class name, kind (prompt | image | raw), the prompt text, the example image id or the sha256 of an
  uploaded example (kept in the blob store so it can be re-encoded for another model).

Reference ids are uuid5(owner/class/kind/key), so adding the same prompt, image or vector twice is a
no-op.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import numpy as np
import weaviate
from numpy.typing import NDArray
from pydantic import BaseModel, Field
from weaviate.classes.query import Filter
from weaviate.exceptions import WeaviateQueryError

from indexer.classify.calibration import CalibrationResult, ThresholdStats
from indexer.classify.prompts import DEFAULT_TEMPLATES
from indexer.classify.scoring import OTHER
from indexer.errors import Conflict, InvalidInput, NotFound
from indexer.store.images import fetch_or_none, in_collection, is_missing_class, vector_of
from indexer.store.scan import scan
from indexer.store.schema import (
    CLASS_REGISTRY,
    IMAGE_ID_NAMESPACE,
    ensure_class_registry,
    ensure_reference_collection,
    reference_collection_name,
)

NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_CLASS_NAME: Final = 100
MAX_CLASSES: Final = 10_000


class Kind(StrEnum):
    CLASS_SET = "class_set"
    CLASSIFIER = "classifier"


class RefKind(StrEnum):
    PROMPT = "prompt"
    IMAGE = "image"
    RAW = "raw"


NOUN = {Kind.CLASS_SET: "class set", Kind.CLASSIFIER: "classifier"}


class Reference(BaseModel):
    class_name: str
    kind: RefKind
    text: str = Field(default="", description="prompt: the text that was encoded (or the ensemble)")
    prompt: str = Field(default="", description="prompt: the class prompt before templating")
    image_id: str = Field(default="", description="image: the stored image used as the example")
    sha256: str = Field(default="", description="image: the uploaded example's content hash")
    filename: str = Field(default="", description="image: the uploaded example's file name")
    position: int = Field(default=0, description="raw: index of the vector in its upload")

    def key(self) -> str:
        if self.kind is RefKind.PROMPT:
            return f"prompt:{self.text}"
        if self.kind is RefKind.IMAGE:
            return f"image:{self.image_id}" if self.image_id else f"upload:{self.sha256}"
        return f"raw:{self.sha256}"


class Calibration(ThresholdStats):
    """The figures measured at the chosen threshold, stored with the classifier."""

    model_id: str
    method: str  # max_f1 | target_precision
    target_precision: float | None = None
    examples: int
    positives: int
    calibrated_at: datetime


class ClassSetRecord(BaseModel):
    name: str
    kind: Kind
    collection: str = ""
    model_id: str
    version: int = 1
    created_at: datetime
    updated_at: datetime
    description: str = ""
    threshold: float | None = None
    templates: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    ensemble: bool = False
    logit_scale: float = 100.0
    logit_bias: float | None = Field(
        default=None, description="SigLIP models: probabilities are sigmoid(scale * cos + bias)"
    )
    classes: list[str] = Field(default_factory=list)
    labelled_names: list[str] = Field(default_factory=list, description="labels this set has written")
    calibration: Calibration | None = None
    dropped: dict[str, int] = Field(
        default_factory=dict, description="raw references per class dropped when the model changed"
    )

    @property
    def noun(self) -> str:
        return NOUN[self.kind]

    @property
    def uuid(self) -> str:
        return owner_uuid(self.kind, self.name)


KEY_FIELDS: Final = ("name", "kind", "collection", "model_id", "version", "created_at", "updated_at")


def owner_uuid(kind: Kind, name: str) -> str:
    return str(uuid.uuid5(IMAGE_ID_NAMESPACE, f"{kind.value}/{name}"))


def validate_set_name(name: str, kind: Kind) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid {NOUN[kind]} name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_class_name(name: str) -> str:
    if not name.strip() or len(name) > MAX_CLASS_NAME or name != name.strip():
        raise InvalidInput(
            f"invalid class name {name!r}: 1 to {MAX_CLASS_NAME} characters, no leading or trailing space"
        )
    if any(ord(ch) < 32 for ch in name):
        raise InvalidInput(f"invalid class name {name!r}: control characters")
    if name == OTHER:
        raise InvalidInput(f"{OTHER!r} is reserved for scores below the threshold; pick another class name")
    return name


def raw_key(vector: NDArray[np.float32]) -> str:
    return hashlib.sha256(np.ascontiguousarray(vector, dtype=np.float32).tobytes()).hexdigest()


def _to_props(record: ClassSetRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    props = {key: data.pop(key) for key in KEY_FIELDS}
    props["created_at"] = record.created_at
    props["updated_at"] = record.updated_at
    props["config"] = json.dumps(data)
    return props


def _from_props(props: dict[str, Any]) -> ClassSetRecord:
    config = json.loads(props.get("config") or "{}")
    data = {key: props.get(key) for key in KEY_FIELDS}
    return ClassSetRecord.model_validate({**config, **data, "collection": data["collection"] or ""})


class ClassStore:
    """Building one costs no request. The registry and this process's reference collection are created
    at start-up (`Backends.ensure_schema`); the writers that may be the first user of a model create
    theirs (`create`, `add_references`). A read of a Weaviate collection that does not exist (never
    created, or wiped) is "nothing there": NotFound for one record, empty for a list."""

    def __init__(self, client: weaviate.WeaviateClient) -> None:
        self.client = client
        self.registry = client.collections.use(CLASS_REGISTRY)

    # -- registry --------------------------------------------------------------------------------
    def exists(self, kind: Kind, name: str) -> bool:
        return bool(self.registry.data.exists(owner_uuid(kind, name)))

    def get(self, kind: Kind, name: str) -> ClassSetRecord:
        obj = fetch_or_none(self.registry, owner_uuid(kind, name))
        if obj is None:
            raise NotFound(f"unknown {NOUN[kind]} {name!r}")
        return _from_props(dict(obj.properties))

    def all(self, kind: Kind, collection: str | None = None) -> list[ClassSetRecord]:
        where = Filter.by_property("kind").equal(kind.value)
        if collection is not None:
            where = where & in_collection(collection)
        try:
            records = [
                _from_props(dict(obj.properties))
                for page in scan(self.registry, where, "name")
                for obj in page
            ]
        except WeaviateQueryError as exc:
            if not is_missing_class(exc):
                raise
            return []
        return sorted(records, key=lambda r: r.name)

    def create(self, record: ClassSetRecord) -> ClassSetRecord:
        ensure_class_registry(self.client)  # a writer may be the first (a wiped server)
        if self.exists(record.kind, record.name):
            raise Conflict(f"{record.noun} {record.name!r} already exists")
        self.registry.data.insert(properties=_to_props(record), uuid=record.uuid)
        return record

    def save(self, record: ClassSetRecord) -> ClassSetRecord:
        """Write the record back with the next version."""
        record.version += 1
        record.updated_at = datetime.now(UTC)
        self.registry.data.replace(uuid=record.uuid, properties=_to_props(record))
        return record

    def delete(self, record: ClassSetRecord) -> None:
        self.delete_references(record)
        self.registry.data.delete_by_id(record.uuid)

    # -- references ------------------------------------------------------------------------------
    def _refs(self, model_id: str, *, ensure: bool = False) -> weaviate.collections.Collection[Any, Any]:
        if ensure:
            return self.client.collections.use(ensure_reference_collection(self.client, model_id))
        return self.client.collections.use(reference_collection_name(model_id))

    def references(self, record: ClassSetRecord) -> tuple[list[Reference], NDArray[np.float32]]:
        """Every reference of the record with its vector, in a stable order."""
        try:
            return self._read_references(record)
        except WeaviateQueryError as exc:
            if not is_missing_class(exc):
                raise
            return [], np.empty((0, 0), np.float32)  # no reference of this model was ever stored

    def _read_references(self, record: ClassSetRecord) -> tuple[list[Reference], NDArray[np.float32]]:
        refs: list[Reference] = []
        vectors: list[list[float]] = []
        where = Filter.by_property("owner").equal(record.uuid)
        for page in scan(self._refs(record.model_id), where, "ref_key", include_vector=True):
            for obj in page:
                props = {k: v for k, v in dict(obj.properties).items() if v is not None}
                vector = vector_of(obj)
                if vector is None:
                    continue
                refs.append(
                    Reference.model_validate({k: props[k] for k in Reference.model_fields if k in props})
                )
                vectors.append(vector)
        array = np.asarray(vectors, dtype=np.float32) if vectors else np.empty((0, 0), np.float32)
        return refs, array

    def add_references(
        self, record: ClassSetRecord, refs: list[Reference], vectors: NDArray[np.float32]
    ) -> None:
        from weaviate.classes.data import DataObject

        objects = []
        for ref, vector in zip(refs, vectors, strict=True):
            ref_id = str(uuid.uuid5(IMAGE_ID_NAMESPACE, f"{record.uuid}/{ref.class_name}/{ref.key()}"))
            props = {**ref.model_dump(mode="json"), "owner": record.uuid, "ref_key": ref_id}
            objects.append(DataObject(properties=props, uuid=ref_id, vector=vector.tolist()))
        if not objects:
            return
        # a writer may be the first user of its model's reference collection (auto-schema must not guess)
        result = self._refs(record.model_id, ensure=True).data.insert_many(objects)
        if result.errors:
            first = next(iter(result.errors.values()))
            raise InvalidInput(f"the vector store refused a reference: {first.message}")

    def delete_references(
        self,
        record: ClassSetRecord,
        class_names: list[str] | None = None,
        model_id: str | None = None,
        kind: RefKind | None = None,
    ) -> None:
        where = Filter.by_property("owner").equal(record.uuid)
        if kind is not None:
            where = where & Filter.by_property("kind").equal(kind.value)
        if class_names is not None:
            if not class_names:
                return
            where = where & Filter.by_property("class_name").contains_any(class_names)
        refs = self._refs(model_id or record.model_id)
        while True:
            try:
                result = refs.data.delete_many(where=where)
            except WeaviateQueryError as exc:  # WeaviateDeleteManyError included
                if is_missing_class(exc):  # no reference of this model was ever stored
                    return
                raise
            if result.successful == 0 or result.matches < 10_000:
                return


def new_record(
    kind: Kind,
    name: str,
    *,
    model_id: str,
    logit_scale: float,
    logit_bias: float | None = None,
    collection: str = "",
    **config: Any,
) -> ClassSetRecord:
    now = datetime.now(UTC)
    return ClassSetRecord(
        name=validate_set_name(name, kind),
        kind=kind,
        collection=collection,
        model_id=model_id,
        created_at=now,
        updated_at=now,
        logit_scale=logit_scale,
        logit_bias=logit_bias,
        **config,
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
