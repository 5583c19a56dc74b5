"""Weaviate layout.

- `ClipsearchCollection`: one object per user collection (name, model id, created time). No vectors.
- `Images_<model>`: one Weaviate collection per CLIP model, holding the images of every user collection
  bound to that model, told apart by the `collection` property. Vectors of different models therefore
  never share an index or a query, and a model change is a re-embed into another Weaviate collection.
  HNSW with cosine distance; filtered search (collection, tags, labels, metadata, dates) uses Weaviate's
  inverted index with the ACORN strategy, so a small user collection inside a large index stays fast.
- Object UUIDs are uuid5(collection + sha256 of the bytes): re-ingesting the same bytes into the same
  collection is a no-op, and a retried task cannot create a second object.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

from indexer.store.options import Compression, options_of

REGISTRY = "ClipsearchCollection"
# A filter that matches fewer objects than this is answered by a brute-force scan of those objects,
# more by the HNSW graph. Weaviate's default, 40,000, made a 10k-20k user collection a full scan on every
# search (p50 6.4 ms at 10k on 2 cores against 4.7 ms through the graph, benchmarks/search.py); under a few
# thousand objects the scan is both exact and the cheaper of the two.
FLAT_SEARCH_CUTOFF = 5000
IMAGE_ID_NAMESPACE = uuid.UUID("6f1c7f0e-4f0a-4c55-9d63-8e0d7f3b9a11")


def image_collection_name(model_id: str) -> str:
    return "Images_" + re.sub(r"[^0-9A-Za-z_]", "_", model_id)


def image_uuid(collection: str, sha256: str) -> str:
    return str(uuid.uuid5(IMAGE_ID_NAMESPACE, f"{collection}/{sha256}"))


def _text(name: str, *, filterable: bool = True, array: bool = False) -> Property:
    return Property(
        name=name,
        data_type=DataType.TEXT_ARRAY if array else DataType.TEXT,
        tokenization=Tokenization.FIELD,
        index_filterable=filterable,
        index_searchable=False,
    )


def _texts(name: str) -> Property:
    return _text(name, array=True)


def _number(name: str) -> Property:
    return Property(name=name, data_type=DataType.NUMBER, index_range_filters=True)


# What the photo says about itself (indexer/media/exif.py) and where it was taken (indexer/media/places.py),
# added to existing image collections at start-up (`add_missing_properties`); images stored before have
# none of them.
PHOTO_PROPERTIES = [
    Property(name="taken_at", data_type=DataType.DATE, index_range_filters=True),
    _text("taken_at_offset", filterable=False),  # "+02:00"; "" when the photo gave none
    Property(name="taken_at_local", data_type=DataType.BOOL),  # no offset: a wall-clock time kept as UTC
    _text("taken_at_source"),  # exif | xmp | mtime
    _text("taken_month"),  # "2019-06": the date facets' group (Weaviate aggregates group by value)
    _text("camera"),  # "Make Model" without the make twice: the camera filter and facet
    _text("camera_make"),
    _text("camera_model"),
    _text("lens"),
    _number("focal_length_mm"),
    _number("exposure_s"),
    _number("iso"),
    _number("altitude"),
    Property(name="location", data_type=DataType.GEO_COORDINATES),
    _text("country"),
    _text("country_code"),
    _text("region"),
    _text("city"),
    # Words of the file name, path, tags, places, camera and string metadata: the keyword half of a hybrid
    # search (BM25). Word tokenization splits "IMG_2041.jpg" into img, 2041, jpg, so "IMG_2041" finds it.
    Property(
        name="search_text",
        data_type=DataType.TEXT,
        tokenization=Tokenization.WORD,
        index_filterable=False,
        index_searchable=True,
    ),
]

IMAGE_PROPERTIES = [
    _text("collection"),
    _text("filename"),
    _text("source"),
    _text("sha256"),
    _text("format"),
    Property(name="width", data_type=DataType.INT),
    Property(name="height", data_type=DataType.INT),
    Property(name="bytes", data_type=DataType.INT),
    Property(name="ingested_at", data_type=DataType.DATE),
    _text("job_id"),
    _texts("tags"),
    _text("metadata", filterable=False),  # the user's JSON, verbatim
    _texts("meta_kv"),  # "key=value" for each scalar of metadata, for equality filters
    _texts("labels"),
    _text("label_scores", filterable=False),  # JSON {label: score}
    *PHOTO_PROPERTIES,
]
IMAGE_PROPERTY_NAMES = frozenset(p.name for p in IMAGE_PROPERTIES)


def replication(client: weaviate.WeaviateClient) -> dict[str, Any]:
    """The replication arguments of a new collection: on a cluster, WEAVIATE_REPLICATION_FACTOR copies
    (default min(nodes, 3)) with async replication, so a node that was down catches up by itself; on a
    single node nothing (as before)."""
    try:
        nodes = len(client.cluster.nodes(output="minimal"))
    except Exception:  # an older server or a restricted key: a single node's defaults
        nodes = 1
    factor = options_of(client).replication_factor or min(nodes, 3)
    if nodes < 2 and factor < 2:
        return {}
    return {"replication_config": Configure.replication(factor=factor, async_enabled=True)}


def vector_quantizer(kind: Compression | str) -> Any:
    """The quantizer of a new image collection's HNSW index (WEAVIATE_VECTOR_COMPRESSION); None for
    uncompressed vectors."""
    q = Configure.VectorIndex.Quantizer
    if kind == "rq8":
        return q.rq(bits=8)
    if kind == "rq1":
        return q.rq(bits=1)
    if kind == "sq":
        return q.sq()
    if kind == "bq":
        return q.bq()
    if kind == "pq":
        return q.pq()
    if kind != "none":
        raise ValueError(f"unknown vector compression {kind!r}")
    return None


def ensure_registry(client: weaviate.WeaviateClient) -> None:
    if client.collections.exists(REGISTRY):
        return
    client.collections.create(
        REGISTRY,
        properties=[
            _text("name"),
            _text("model_id"),
            _text("description", filterable=False),
            Property(name="created_at", data_type=DataType.DATE),
        ],
        **replication(client),
        vector_config=Configure.Vectors.self_provided(),
    )


_upgraded: set[str] = set()


def add_missing_properties(client: weaviate.WeaviateClient, name: str) -> list[str]:
    """Add the image properties that an existing collection (created by an older version) lacks; once per
    collection and process. Objects stored before simply have no value for them."""
    if name in _upgraded:
        return []
    collection = client.collections.use(name)
    have = {p.name for p in collection.config.get().properties}
    added = []
    for prop in IMAGE_PROPERTIES:
        if prop.name not in have:
            try:
                collection.config.add_property(prop)
            except weaviate.exceptions.UnexpectedStatusCodeError as exc:
                if "already exists" not in str(exc):  # another process added it first
                    raise
            added.append(prop.name)
    _upgraded.add(name)
    return added


def ensure_image_collection(client: weaviate.WeaviateClient, model_id: str) -> str:
    name = image_collection_name(model_id)
    if client.collections.exists(name):
        add_missing_properties(client, name)
    else:
        try:
            client.collections.create(
                name,
                properties=IMAGE_PROPERTIES,
                **replication(client),
                vector_config=Configure.Vectors.self_provided(
                    vector_index_config=Configure.VectorIndex.hnsw(
                        distance_metric=VectorDistances.COSINE,
                        flat_search_cutoff=FLAT_SEARCH_CUTOFF,
                        quantizer=vector_quantizer(options_of(client).vector_compression),
                    )
                ),
                inverted_index_config=Configure.inverted_index(index_timestamps=True),
            )
        except weaviate.exceptions.UnexpectedStatusCodeError as exc:
            if "already exists" not in str(exc):  # another process won the race
                raise
    return name


# -- classification: class sets, classifiers and their reference vectors (indexer/classify) ---------
CLASS_REGISTRY = "ClipsearchClassSet"


def reference_collection_name(model_id: str) -> str:
    return "ClassReference_" + re.sub(r"[^0-9A-Za-z_]", "_", model_id)


def ensure_class_registry(client: weaviate.WeaviateClient) -> None:
    """Class sets and classifiers, one object each, no vector: name, kind, binding and JSON config."""
    if client.collections.exists(CLASS_REGISTRY):
        return
    try:
        client.collections.create(
            CLASS_REGISTRY,
            properties=[
                _text("name"),
                _text("kind"),  # class_set | classifier
                _text("collection"),
                _text("model_id"),
                Property(name="version", data_type=DataType.INT),
                _text("config", filterable=False),  # JSON
                Property(name="created_at", data_type=DataType.DATE),
                Property(name="updated_at", data_type=DataType.DATE),
            ],
            **replication(client),
            vector_config=Configure.Vectors.self_provided(),
        )
    except weaviate.exceptions.UnexpectedStatusCodeError as exc:
        if "already exists" not in str(exc):
            raise


def ensure_reference_collection(client: weaviate.WeaviateClient, model_id: str) -> str:
    """`ClassReference_<model>`: one object per reference vector (prompt, example image or raw), owned
    by a class set or classifier. A flat index: references are read whole and scored in numpy."""
    name = reference_collection_name(model_id)
    if client.collections.exists(name):
        return name
    try:
        client.collections.create(
            name,
            properties=[
                _text("owner"),  # the registry object's uuid
                _text("ref_key"),  # unique within the owner; keyset pagination
                _text("class_name"),
                _text("kind"),  # prompt | image | raw
                _text("text", filterable=False),
                _text("prompt", filterable=False),
                _text("image_id"),
                _text("sha256"),
                _text("filename", filterable=False),
                Property(name="position", data_type=DataType.INT),
            ],
            **replication(client),
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.flat(distance_metric=VectorDistances.COSINE)
            ),
        )
    except weaviate.exceptions.UnexpectedStatusCodeError as exc:
        if "already exists" not in str(exc):
            raise
    return name
