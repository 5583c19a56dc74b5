"""Creating and changing class sets and classifiers, and re-encoding them when their collection moves
to another model. New references are built (and so validated)
before anything stored is touched, so a bad request changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from indexer.classify.prompts import CLIP_ENSEMBLE, DEFAULT_TEMPLATES, validate_templates
from indexer.classify.references import (
    Built,
    ClassDef,
    Encoder,
    build_classes,
    concat,
    prompt_references,
    raw_references,
    stored_vectors,
    upload_references,
)
from indexer.classify.store import (
    MAX_CLASSES,
    ClassSetRecord,
    ClassStore,
    Kind,
    RefKind,
    new_record,
    validate_class_name,
)
from indexer.errors import Conflict, InvalidInput, MissingOriginal, require_model
from indexer.storage.blobs import BlobStore
from indexer.store.collections import get_collection
from indexer.store.images import ImageStore

log = logging.getLogger(__name__)


def default_templates(templates: list[str] | None, use_ensemble: bool) -> list[str]:
    if templates is None:
        return list(CLIP_ENSEMBLE if use_ensemble else DEFAULT_TEMPLATES)
    return validate_templates(templates)


def _check_model(record: ClassSetRecord, encoder: Encoder) -> None:
    require_model(f"{record.noun} {record.name!r}", record.model_id, encoder.model_id)


def _check_count(classes: list[str]) -> None:
    if len(classes) > MAX_CLASSES:
        raise InvalidInput(f"at most {MAX_CLASSES} classes, got {len(classes)}")


def create(
    store: ClassStore,
    encoder: Encoder,
    images: ImageStore,
    *,
    kind: Kind,
    name: str,
    collection: str = "",
    description: str = "",
    threshold: float | None = None,
    templates: list[str] | None = None,
    ensemble: bool = False,
    classes: dict[str, ClassDef] | None = None,
) -> ClassSetRecord:
    classes = classes or {}
    _check_count(list(classes))
    record = new_record(
        kind,
        name,
        model_id=encoder.model_id,
        logit_scale=encoder.logit_scale,
        logit_bias=encoder.logit_bias,
        collection=collection,
        description=description,
        threshold=threshold,
        templates=default_templates(templates, ensemble),
        ensemble=ensemble,
        classes=list(classes),
    )
    if store.exists(kind, name):
        raise Conflict(f"{record.noun} {name!r} already exists")
    refs, vectors = build_classes(encoder, images, classes, record.templates, record.ensemble)
    # Version 0 while its references are written, then version 1: a reader in between (another
    # process) never keeps a half-written set (indexer.classify.scorer.ScorerCache skips version 0).
    record.version = 0
    store.create(record)
    store.add_references(record, refs, vectors)
    return store.save(record)


def update(
    store: ClassStore,
    encoder: Encoder,
    images: ImageStore,
    record: ClassSetRecord,
    changes: dict[str, Any],
    *,
    replace: dict[str, ClassDef] | None = None,
    add: dict[str, ClassDef] | None = None,
    remove: list[str] | None = None,
) -> ClassSetRecord:
    """``changes``: description, threshold, templates, ensemble (only the keys given). ``replace``: these
    classes get exactly the given references; ``add``: references added to (new or existing) classes;
    ``remove``: classes dropped with their references."""
    _check_model(record, encoder)
    replace, add, remove = replace or {}, add or {}, remove or []
    for name in remove:
        if name not in record.classes:
            raise InvalidInput(f"cannot remove class {name!r}: not in {record.noun} {record.name!r}")
    overlap = set(remove) & (set(replace) | set(add))
    if overlap:
        raise InvalidInput(f"class {sorted(overlap)[0]!r} is both removed and changed")
    use_ensemble = bool(changes.get("ensemble", record.ensemble))
    templates = record.templates
    if "templates" in changes or "ensemble" in changes:
        templates = default_templates(changes.get("templates", record.templates), use_ensemble)
    prompts_changed = templates != record.templates or use_ensemble != record.ensemble
    built: list[Built] = [build_classes(encoder, images, replace, templates, use_ensemble)]
    built.append(build_classes(encoder, images, add, templates, use_ensemble))
    existing_prompts: dict[str, list[str]] = {}
    if prompts_changed:  # every other class's prompts are rendered again with the new templates
        refs, _ = store.references(record)
        for ref in refs:
            if ref.kind is RefKind.PROMPT and ref.class_name not in replace and ref.class_name not in remove:
                existing_prompts.setdefault(ref.class_name, []).append(ref.prompt)
        built.append(prompt_references(encoder, existing_prompts, templates, use_ensemble))
    new_refs, vectors = concat(built, encoder.dim)
    classes = [c for c in record.classes if c not in remove]
    classes += [c for c in [*replace, *add] if c not in classes]
    _check_count(classes)

    store.delete_references(record, list(replace) + list(remove))
    if prompts_changed:
        store.delete_references(record, list(existing_prompts), kind=RefKind.PROMPT)
    store.add_references(record, new_refs, vectors)
    record.classes = classes
    record.templates = templates
    record.ensemble = use_ensemble
    if "description" in changes:
        record.description = changes["description"] or ""
    if "threshold" in changes:
        record.threshold = changes["threshold"]
    return store.save(record)


def add_examples(
    store: ClassStore,
    encoder: Encoder,
    blobs: BlobStore,
    record: ClassSetRecord,
    class_name: str,
    files: list[tuple[str, bytes]],
    max_pixels: int,
) -> ClassSetRecord:
    _check_model(record, encoder)
    validate_class_name(class_name)
    refs, vectors = upload_references(encoder, blobs, class_name, files, max_pixels)
    return _append(store, record, [class_name], refs, vectors)


def add_embeddings(
    store: ClassStore, encoder: Encoder, record: ClassSetRecord, raw: dict[str, list[list[float]]]
) -> ClassSetRecord:
    _check_model(record, encoder)
    refs, vectors = raw_references(encoder.dim, encoder.model_id, raw)
    return _append(store, record, list(raw), refs, vectors)


def _append(
    store: ClassStore, record: ClassSetRecord, names: list[str], refs: list[Any], vectors: np.ndarray
) -> ClassSetRecord:
    classes = record.classes + [c for c in dict.fromkeys(names) if c not in record.classes]
    _check_count(classes)
    store.add_references(record, refs, vectors)
    record.classes = classes
    return store.save(record)


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
            decodes.append(encoder.decoder.decode(data, max_pixels, min_side=encoder.min_decode_side))
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
