"""Image objects in Weaviate: batch writes, lookups by id, near-vector queries and deletes."""

from __future__ import annotations

import json
import uuid as uuid_lib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import weaviate
from numpy.typing import NDArray
from pydantic import BaseModel, Field
from weaviate.classes.aggregate import GroupByAggregate
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.exceptions import WeaviateQueryError

from indexer.errors import InvalidInput, NotFound, is_quorum_message, quorum_lost
from indexer.store.options import options_of
from indexer.store.schema import IMAGE_PROPERTIES, REGISTRY, ensure_image_collection, image_collection_name
from indexer.store.types import WhereFilter

DELETE_BATCH = 10_000
# What a search returns of each hit: every property but `meta_kv` (the filter index of `metadata`, which
# the hit carries as JSON anyway): less to read on the server and to decode in the client.
# `search_text` (the words of a hybrid search's keyword half) is left out the same way.
HIT_PROPERTIES = [p.name for p in IMAGE_PROPERTIES if p.name not in ("meta_kv", "search_text")]
SEARCH_PROPERTIES = ["search_text"]  # what the keyword half of a hybrid search reads


def is_missing_class(exc: BaseException) -> bool:
    """Weaviate's answer to a query on a collection (class) that is not in its schema (deleted by another
    process, or a server whose data was wiped). Reads and deletes take it as "no objects"."""
    return isinstance(exc, WeaviateQueryError) and "could not find class" in str(exc)


def fetch_or_none(collection: Any, uuid: str, **options: Any) -> Any:
    """One object by id, or None when it is not there, nor its collection (class) either."""
    try:
        return collection.query.fetch_object_by_id(uuid, **options)
    except WeaviateQueryError as exc:
        if not is_missing_class(exc):
            raise
        return None


def _near(min_score: float | None, limit: int, offset: int, filters: WhereFilter | None) -> dict[str, Any]:
    """The arguments every near-vector or near-object query of images shares."""
    return {
        "limit": limit,
        "offset": offset or None,
        "distance": None if min_score is None else 1.0 - min_score,
        "filters": filters,
        "return_properties": HIT_PROPERTIES,
        "return_metadata": MetadataQuery(distance=True),
    }


def _is_missing_object(exc: BaseException) -> bool:
    return isinstance(exc, WeaviateQueryError) and "search-object with id" in str(exc)


def vector_of(obj: Any) -> list[float] | None:
    """A fetched object's vector (its default named vector, or the plain one), or None without one."""
    raw = obj.vector.get("default") if isinstance(obj.vector, dict) else obj.vector
    return list(raw) if raw is not None else None


def check_image_id(image_id: str) -> str:
    """A stored image id is a UUID; anything else is refused before it reaches Weaviate."""
    try:
        return str(uuid_lib.UUID(image_id))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(
            f"malformed image id {image_id!r}: expected a UUID", {"image_id": image_id}
        ) from exc


def in_collection(collection: str) -> WhereFilter:
    """The image objects of one user collection (every query of a collection's images starts here)."""
    return Filter.by_property("collection").equal(collection)


def in_collections(collections: Sequence[str]) -> WhereFilter:
    return Filter.by_property("collection").contains_any(list(collections))


class GeoPoint(BaseModel):
    latitude: float
    longitude: float


class ImageRecord(BaseModel):
    id: str
    collection: str
    filename: str
    source: str = ""
    sha256: str
    format: str
    width: int
    height: int
    bytes: int = 0
    ingested_at: datetime
    job_id: str = ""
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    label_scores: dict[str, float] = Field(default_factory=dict)
    # from the photo's EXIF/XMP (indexer/media/exif.py) and its GPS position's place (media/places.py)
    taken_at: datetime | None = Field(
        default=None, description="when the photo was taken (UTC; see taken_at_local), else the file's mtime"
    )
    taken_at_offset: str = Field(default="", description='the UTC offset the photo gave, e.g. "+02:00"')
    taken_at_local: bool = Field(
        default=False, description="no offset was given: taken_at is the camera's wall-clock time, as UTC"
    )
    taken_at_source: str = Field(default="", description="exif, xmp or mtime")
    taken_month: str = Field(default="", description='"2019-06": the month of taken_at')
    camera: str = ""
    camera_make: str = ""
    camera_model: str = ""
    lens: str = ""
    focal_length_mm: float | None = None
    exposure_s: float | None = None
    iso: float | None = None
    altitude: float | None = Field(default=None, description="metres above sea level")
    location: GeoPoint | None = None
    country: str = ""
    country_code: str = ""
    region: str = ""
    city: str = ""

    @classmethod
    def from_object(cls, uuid: object, props: dict[str, Any]) -> ImageRecord:
        data = {key: value for key, value in props.items() if value is not None}
        data["metadata"] = json.loads(data.get("metadata") or "{}")
        data["label_scores"] = json.loads(data.get("label_scores") or "{}")
        data.pop("meta_kv", None)
        data.pop("search_text", None)
        location = data.get("location")
        if location is not None and not isinstance(location, dict):  # the client's GeoCoordinate
            data["location"] = {"latitude": location.latitude, "longitude": location.longitude}
        return cls(id=str(uuid), **data)


def meta_kv(metadata: dict[str, Any]) -> list[str]:
    """'key=value' for each scalar metadata field, so that equality filters can use the inverted index."""
    return [
        f"{key}={json.dumps(value)}" for key, value in metadata.items() if not isinstance(value, dict | list)
    ]


def search_words(record: ImageRecord) -> str:
    """The text of a hybrid search's keyword half: file name, path, tags, places, camera, lens and the
    string values of the user's metadata."""
    parts = [record.filename, record.source, *record.tags, record.city, record.region, record.country]
    parts += [record.camera, record.lens]
    parts += [value for value in record.metadata.values() if isinstance(value, str)]
    return "\n".join(part for part in parts if part)


def to_properties(record: ImageRecord) -> dict[str, Any]:
    from weaviate.classes.data import GeoCoordinate

    props = record.model_dump(exclude={"id", "location"}, exclude_none=True)
    props["metadata"] = json.dumps(record.metadata)
    props["label_scores"] = json.dumps(record.label_scores)
    props["meta_kv"] = meta_kv(record.metadata)
    props["search_text"] = search_words(record)
    if record.location is not None:
        props["location"] = GeoCoordinate(
            latitude=record.location.latitude, longitude=record.location.longitude
        )
    return props


class ScoredImage(BaseModel):
    image: ImageRecord
    score: float


class ImageStore:
    """The images of one model's Weaviate collection.

    Building one costs no request: the collection is created when a user collection is bound to the
    model (`create_collection`) and at start-up for the process's own model (`Backends.ensure_schema`).
    `ensure=True` creates it here, for a writer that may be the first user of a model.
    """

    def __init__(self, client: weaviate.WeaviateClient, model_id: str, *, ensure: bool = False) -> None:
        self.client = client
        self.model_id = model_id
        self.name = ensure_image_collection(client, model_id) if ensure else image_collection_name(model_id)
        # reads and writes at WEAVIATE_CONSISTENCY (QUORUM: a cluster answers with one node down)
        self.collection = client.collections.use(self.name).with_consistency_level(
            options_of(client).consistency_level
        )

    def existing(self, uuids: Sequence[str]) -> dict[str, str]:
        """uuid -> job_id of the objects among `uuids` that are already stored."""
        if not uuids:
            return {}
        try:
            found = self.collection.query.fetch_objects(
                filters=Filter.by_id().contains_any(list(uuids)),
                limit=len(uuids),
                return_properties=["job_id"],
            )
        except WeaviateQueryError as exc:
            if is_missing_class(exc):  # no such index yet: nothing is stored
                return {}
            raise
        return {str(obj.uuid): str(obj.properties.get("job_id") or "") for obj in found.objects}

    def insert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> dict[str, str]:
        """Write records with their vectors in one batch; returns uuid -> error for the ones that failed."""
        from weaviate.classes.data import DataObject

        objects = [
            DataObject(properties=to_properties(record), uuid=record.id, vector=vector.tolist())
            for record, vector in zip(records, vectors, strict=True)
        ]
        result = self.collection.data.insert_many(objects)
        errors = {records[index].id: error.message for index, error in result.errors.items()}
        # an object refused for want of replicas is not a bad object: the whole write waits for quorum
        lost = next((message for message in errors.values() if is_quorum_message(message)), None)
        if lost is not None:
            raise quorum_lost(lost)
        return errors

    def records(self, uuids: Sequence[str]) -> dict[str, ImageRecord]:
        """The stored records among `uuids`, by id."""
        if not uuids:
            return {}
        try:
            found = self.collection.query.fetch_objects(
                filters=Filter.by_id().contains_any(list(uuids)), limit=len(uuids)
            )
        except WeaviateQueryError as exc:
            if is_missing_class(exc):
                return {}
            raise
        return {
            str(obj.uuid): ImageRecord.from_object(obj.uuid, dict(obj.properties)) for obj in found.objects
        }

    def get(self, uuid: str, *, include_vector: bool = False) -> tuple[ImageRecord, list[float] | None]:
        obj = fetch_or_none(self.collection, check_image_id(uuid), include_vector=include_vector)
        if obj is None:
            raise NotFound(f"unknown image {uuid!r}")
        vector = None
        if include_vector:
            raw = vector_of(obj)
            vector = [float(x) for x in raw] if raw is not None else None
        return ImageRecord.from_object(obj.uuid, dict(obj.properties)), vector

    def near_vector(
        self,
        vector: Sequence[float] | NDArray[np.float32],
        filters: WhereFilter | None,
        limit: int,
        offset: int = 0,
        min_score: float | None = None,
    ) -> list[ScoredImage]:
        """Nearest images by cosine similarity (score = 1 - cosine distance): one gRPC request."""
        result = self.collection.query.near_vector(
            near_vector=vector.tolist() if isinstance(vector, np.ndarray) else list(vector),
            **_near(min_score, limit, offset, filters),
        )
        return _scored(result.objects)

    def hybrid(
        self,
        text: str,
        vector: Sequence[float] | NDArray[np.float32] | None,
        alpha: float,
        filters: WhereFilter | None,
        limit: int,
        offset: int = 0,
    ) -> list[ScoredImage]:
        """Weaviate's hybrid query: BM25 over `search_text` (file name, path, tags, places, camera...)
        fused with the near-vector ranking (relative score fusion, `alpha` 1 = vector only, 0 = keywords
        only); score = the fused score. Without a vector, BM25 alone (score = its BM25 score)."""
        if vector is None:
            result = self.collection.query.bm25(
                query=text,
                query_properties=SEARCH_PROPERTIES,
                limit=limit,
                offset=offset or None,
                filters=filters,
                return_properties=HIT_PROPERTIES,
                return_metadata=MetadataQuery(score=True),
            )
        else:
            result = self.collection.query.hybrid(
                query=text,
                vector=vector.tolist() if isinstance(vector, np.ndarray) else list(vector),
                alpha=alpha,
                query_properties=SEARCH_PROPERTIES,
                fusion_type=HybridFusion.RELATIVE_SCORE,
                limit=limit,
                offset=offset or None,
                filters=filters,
                return_properties=HIT_PROPERTIES,
                return_metadata=MetadataQuery(score=True),
            )
        return [
            ScoredImage(
                image=ImageRecord.from_object(obj.uuid, dict(obj.properties)),
                score=round(float(obj.metadata.score or 0.0), 6),
            )
            for obj in result.objects
        ]

    def neighbour_ids(
        self, vector: Sequence[float], filters: WhereFilter | None, limit: int, min_score: float
    ) -> list[tuple[str, float]]:
        """(uuid, cosine) of the nearest images at or above ``min_score``, best first, without their
        properties (the similarity network's per-image query: one small gRPC request)."""
        result = self.collection.query.near_vector(
            near_vector=list(vector),
            limit=limit,
            distance=1.0 - min_score,
            filters=filters,
            return_properties=[],
            return_metadata=MetadataQuery(distance=True),
        )
        return [
            (str(obj.uuid), 1.0 - float(obj.metadata.distance or 0.0))
            for obj in result.objects
            if obj.metadata.distance is not None
        ]

    def near_image(
        self,
        uuid: str,
        filters: WhereFilter | None,
        limit: int,
        offset: int = 0,
        min_score: float | None = None,
    ) -> list[ScoredImage]:
        """Nearest images to a stored image, whose vector Weaviate looks up itself: one gRPC request
        instead of a fetch and a search. The image itself is among the hits when the filters admit it.
        NotFound when there is no such image in this model's collection."""
        try:
            result = self.collection.query.near_object(
                near_object=check_image_id(uuid),
                **_near(min_score, limit, offset, filters),
            )
        except WeaviateQueryError as exc:
            if _is_missing_object(exc):
                raise NotFound(f"unknown image {uuid!r}", {"image_id": uuid}) from exc
            raise
        return _scored(result.objects)

    def count(self, collection: str) -> int:
        return self.counts([collection])[collection]

    def counts(self, collections: Sequence[str]) -> dict[str, int]:
        """Images per collection for several collections of this model, in one aggregate query grouped by
        collection (GET /collections asked once per collection before); 0 for one with no images."""
        counts = dict.fromkeys(collections, 0)
        if not counts:
            return counts
        try:
            result = self.collection.aggregate.over_all(
                filters=in_collections(list(counts)),
                group_by=GroupByAggregate(prop="collection", limit=len(counts)),
                total_count=True,
            )
        except WeaviateQueryError as exc:
            if is_missing_class(exc):
                return counts
            raise
        for group in result.groups:
            name = str(group.grouped_by.value)
            if name in counts:
                counts[name] = int(group.total_count or 0)
        return counts

    def value_counts(self, collection: str, prop: str, limit: int) -> dict[str, int]:
        """How many images of the collection have each value of a text property (its facet), the most
        common first, at most `limit` values; images without a value are not counted."""
        try:
            result = self.collection.aggregate.over_all(
                filters=in_collection(collection),
                group_by=GroupByAggregate(prop=prop, limit=limit),
                total_count=True,
            )
        except WeaviateQueryError as exc:
            if is_missing_class(exc):
                return {}
            raise
        counts = {str(g.grouped_by.value): int(g.total_count or 0) for g in result.groups}
        counts.pop("", None)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def update_labels(self, uuid: str, labels: list[str], scores: dict[str, float]) -> None:
        self.collection.data.update(
            uuid=uuid, properties={"labels": labels, "label_scores": json.dumps(scores)}
        )

    def delete(self, uuid: str) -> None:
        if not self.collection.data.delete_by_id(check_image_id(uuid)):
            raise NotFound(f"unknown image {uuid!r}")

    def delete_where(self, filters: WhereFilter) -> int:
        deleted = 0
        while True:
            try:
                result = self.collection.data.delete_many(where=filters)
            except WeaviateQueryError as exc:  # WeaviateDeleteManyError included
                if is_missing_class(exc):
                    return deleted
                raise
            deleted += result.successful
            if result.matches < DELETE_BATCH or result.successful == 0:
                return deleted


def _scored(objects: Sequence[Any]) -> list[ScoredImage]:
    hits = []
    for obj in objects:
        distance = obj.metadata.distance if obj.metadata.distance is not None else 1.0
        hits.append(
            ScoredImage(
                image=ImageRecord.from_object(obj.uuid, dict(obj.properties)), score=round(1.0 - distance, 6)
            )
        )
    return hits


def model_ids_in_use(client: weaviate.WeaviateClient) -> list[str]:
    """The model ids of all user collections (a handful), to find an image by id alone."""
    registry = client.collections.use(REGISTRY)
    try:
        found = {str(obj.properties["model_id"]) for obj in registry.iterator(return_properties=["model_id"])}
    except WeaviateQueryError as exc:
        if is_missing_class(exc):  # no collection was ever created
            return []
        raise
    return sorted(found)


def find_image(
    client: weaviate.WeaviateClient,
    uuid: str,
    *,
    include_vector: bool = False,
    first_model: str | None = None,
) -> tuple[ImageStore, ImageRecord, list[float] | None]:
    """The image with this id, whichever model's collection holds it. `first_model` (the process's own
    model, where nearly every image lives) is tried first: one request when the image is there."""
    uuid = check_image_id(uuid)

    def candidates() -> Iterator[str]:
        if first_model:
            yield first_model
        yield from (m for m in model_ids_in_use(client) if m != first_model)  # only when not found first

    for model_id in candidates():
        found = _get_in(client, model_id, uuid, include_vector)
        if found is not None:
            return found
    raise NotFound(f"unknown image {uuid!r}")


def _get_in(
    client: weaviate.WeaviateClient, model_id: str, uuid: str, include_vector: bool
) -> tuple[ImageStore, ImageRecord, list[float] | None] | None:
    store = ImageStore(client, model_id)
    try:
        record, vector = store.get(uuid, include_vector=include_vector)
    except NotFound:
        return None
    return store, record, vector
