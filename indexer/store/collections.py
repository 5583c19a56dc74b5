"""User collections: named sets of images, each bound to one model id when it is created."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import weaviate
from pydantic import BaseModel
from weaviate.exceptions import WeaviateQueryError

from indexer.errors import Conflict, DependencyUnavailable, InvalidInput, NotFound
from indexer.storage.gc import BlobCollector, delete_images
from indexer.store.images import ImageStore, in_collection, is_missing_class
from indexer.store.schema import IMAGE_ID_NAMESPACE, REGISTRY, ensure_image_collection, ensure_registry

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CollectionInfo(BaseModel):
    name: str
    model_id: str
    description: str = ""
    created_at: datetime
    count: int | None = None


def _registry_uuid(name: str) -> str:
    return str(uuid.uuid5(IMAGE_ID_NAMESPACE, f"registry/{name}"))


def validate_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid collection name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _info(props: dict[str, object]) -> CollectionInfo:
    return CollectionInfo.model_validate({**props, "description": props.get("description") or ""})


def create_collection(
    client: weaviate.WeaviateClient, name: str, model_id: str, description: str = ""
) -> CollectionInfo:
    validate_name(name)
    ensure_registry(client)
    registry = client.collections.use(REGISTRY)
    if registry.data.exists(_registry_uuid(name)):
        raise Conflict(f"collection {name!r} already exists")
    ensure_image_collection(client, model_id)
    info = CollectionInfo(name=name, model_id=model_id, description=description, created_at=datetime.now(UTC))
    registry.data.insert(properties=info.model_dump(exclude={"count"}), uuid=_registry_uuid(name))
    info.count = 0
    return info


def registry_not_loaded(exc: BaseException) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"the vector store has no collection registry ({REGISTRY}) yet: {str(exc)[:200]}",
        dependency="weaviate",
    )


def get_collection(client: weaviate.WeaviateClient, name: str, *, with_count: bool = True) -> CollectionInfo:
    """One request (no schema check: the registry is created at start-up and by `create_collection`;
    where it is missing, no collection exists)."""
    try:
        obj = client.collections.use(REGISTRY).query.fetch_object_by_id(_registry_uuid(name))
    except WeaviateQueryError as exc:
        if not is_missing_class(exc):
            raise
        # The registry is created at start-up and never dropped: a server without it has not loaded its
        # schema yet (a node just restarted) or lost its data. Either way not "no such collection",
        # which would fail a running job's items for good: an outage, retried.
        raise registry_not_loaded(exc) from exc
    if obj is None:
        raise NotFound(f"unknown collection {name!r}")
    info = _info(dict(obj.properties))
    if with_count:
        info.count = count_images(client, info)
    return info


def list_collections(client: weaviate.WeaviateClient) -> list[CollectionInfo]:
    try:
        infos = [_info(dict(obj.properties)) for obj in client.collections.use(REGISTRY).iterator()]
    except WeaviateQueryError as exc:
        if not is_missing_class(exc):
            raise
        return []
    by_model: dict[str, list[CollectionInfo]] = {}
    for info in infos:
        by_model.setdefault(info.model_id, []).append(info)
    for model_id, group in by_model.items():  # one count query per model, not one per collection
        counts = ImageStore(client, model_id).counts([info.name for info in group])
        for info in group:
            info.count = counts[info.name]
    return sorted(infos, key=lambda info: info.name)


def count_images(client: weaviate.WeaviateClient, info: CollectionInfo) -> int:
    return ImageStore(client, info.model_id).count(info.name)


def delete_collection(
    client: weaviate.WeaviateClient, name: str, collector: BlobCollector | None = None
) -> None:
    """Delete the collection and every image object in it; with a collector, also the blobs that no
    other collection (or class reference) shares."""
    info = get_collection(client, name, with_count=False)
    delete_images(ImageStore(client, info.model_id), in_collection(name), collector)
    client.collections.use(REGISTRY).data.delete_by_id(_registry_uuid(name))


def set_model(client: weaviate.WeaviateClient, name: str, model_id: str) -> None:
    """Bind the collection to another model (a re-embed's switch, indexer/pipeline/reembed.py)."""
    client.collections.use(REGISTRY).data.update(uuid=_registry_uuid(name), properties={"model_id": model_id})
