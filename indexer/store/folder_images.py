"""The images of a user collection that came from a server-side folder (their `source` is the file's
path): list them, give one a new path, and find the ones a changed file replaces (a folder sync,
indexer/sync/)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from weaviate.classes.query import Filter
from weaviate.exceptions import WeaviateQueryError

from indexer.store.images import ImageStore, in_collection, is_missing_class
from indexer.store.scan import scan
from indexer.store.schema import image_uuid
from indexer.sync.diff import Indexed

LIKE_SPECIAL = ("*", "?")


def images_under(store: ImageStore, collection: str, folder: str) -> list[Indexed]:
    """The collection's images whose source path lies below ``folder`` (an absolute, resolved path)."""
    prefix = folder.rstrip("/") + "/"
    # `like` narrows the scan on the server; its wildcards (`*`, `?`) in a path only widen it, and the
    # prefix is checked here exactly.
    cut = min([prefix.find(c) for c in LIKE_SPECIAL if c in prefix] or [len(prefix)])
    where = Filter.all_of([in_collection(collection), Filter.by_property("source").like(prefix[:cut] + "*")])
    found: list[Indexed] = []
    for page in scan(store.collection, where, "sha256", properties=["source", "sha256"]):
        for obj in page:
            source = str(obj.properties.get("source") or "")
            if source.startswith(prefix):
                found.append(Indexed(str(obj.uuid), source, str(obj.properties["sha256"])))
    return found


def stored_by_sha(store: ImageStore, collection: str, shas: Sequence[str]) -> dict[str, Indexed]:
    """sha256 -> the collection's image with these bytes, for the hashes that have one."""
    ids = {image_uuid(collection, sha): sha for sha in shas}
    found: dict[str, Indexed] = {}
    batch = list(ids)
    for start in range(0, len(batch), 1000):
        for uuid, record in store.records(batch[start : start + 1000]).items():
            found[ids[uuid]] = Indexed(uuid, record.source, record.sha256, record.filename)
    return found


def move(store: ImageStore, uuid: str, path: str) -> None:
    """The image keeps its vector and every other property; only its path changes."""
    store.collection.data.update(uuid=uuid, properties={"filename": path, "source": path})


def replaced_by(store: ImageStore, collection: str, new: Mapping[str, str]) -> list[Indexed]:
    """For ``new`` (path -> sha256 of the image just stored from that path): the collection's other
    images at those paths, i.e. the old versions of changed files."""
    if not new:
        return []
    where = Filter.all_of([in_collection(collection), Filter.by_property("source").contains_any(list(new))])
    try:
        result = store.collection.query.fetch_objects(
            filters=where, limit=len(new) * 4 + 100, return_properties=["source", "sha256"]
        )
    except WeaviateQueryError as exc:
        if is_missing_class(exc):
            return []
        raise
    old: list[Indexed] = []
    for obj in result.objects:
        source, sha = str(obj.properties.get("source") or ""), str(obj.properties.get("sha256") or "")
        if source in new and new[source] != sha:
            old.append(Indexed(str(obj.uuid), source, sha))
    return old


def delete(store: ImageStore, images: Sequence[Indexed]) -> int:
    """Delete these image objects (their blobs are the caller's to collect); returns how many went."""
    deleted = 0
    ids = [image.uuid for image in images]
    for start in range(0, len(ids), 1000):
        batch = ids[start : start + 1000]
        result = store.collection.data.delete_many(where=Filter.by_id().contains_any(batch))
        deleted += int(result.successful)
    return deleted
