"""Building reference vectors: prompts (templated, optionally ensembled), stored example images,
uploaded example images and raw embeddings. Each class may mix all of them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from weaviate.classes.query import Filter

from indexer.classify.prompts import ensemble, normalise_rows, rendered
from indexer.classify.store import Reference, RefKind, raw_key, validate_class_name
from indexer.errors import InvalidInput
from indexer.media.decode import DecodedImage
from indexer.media.decoder import Decoder
from indexer.storage.blobs import BlobStore
from indexer.store.images import ImageStore, check_image_id, vector_of

MAX_REFS_PER_CLASS = 1000


class Encoder(Protocol):
    """What building references needs from `indexer.model.encoder.ClipEncoder`."""

    model_id: str
    dim: int
    logit_scale: float
    logit_bias: float | None
    decoder: Decoder  # every decode of image bytes goes through it (indexer/media/decoder.py)

    def encode_texts(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], list[bool]]: ...

    def encode_images(self, images: Sequence[NDArray[np.uint8] | DecodedImage]) -> NDArray[np.float32]: ...

    @property
    def image_size(self) -> int: ...

    @property
    def min_decode_side(self) -> int: ...


class ClassDef(BaseModel):
    """One class: any mix of prompts, stored example images and raw embeddings."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[str] = Field(default_factory=list, max_length=MAX_REFS_PER_CLASS)
    image_ids: list[str] = Field(default_factory=list, max_length=MAX_REFS_PER_CLASS)
    vectors: list[list[float]] = Field(default_factory=list, max_length=MAX_REFS_PER_CLASS)


Built = tuple[list[Reference], NDArray[np.float32]]


def _empty(dim: int) -> Built:
    return [], np.empty((0, dim), dtype=np.float32)


def concat(parts: list[Built], dim: int) -> Built:
    refs = [r for part in parts for r in part[0]]
    vectors = [part[1] for part in parts if len(part[1])]
    return refs, (np.concatenate(vectors).astype(np.float32) if vectors else np.empty((0, dim), np.float32))


def prompt_references(
    encoder: Encoder, prompts: dict[str, list[str]], templates: list[str], use_ensemble: bool
) -> Built:
    """Encode every rendered prompt in one batch. Without an ensemble each rendered text is a reference;
    with one, the rendered texts of a prompt are averaged into one reference."""
    plan: list[tuple[str, str, list[str]]] = []  # class, prompt, rendered texts
    for class_name, class_prompts in prompts.items():
        for prompt in dict.fromkeys(class_prompts):
            plan.append((class_name, prompt.strip(), rendered(prompt, templates)))
    texts = list(dict.fromkeys(t for _, _, ts in plan for t in ts))
    if not texts:
        return _empty(encoder.dim)
    encoded, _ = encoder.encode_texts(texts)
    by_text = dict(zip(texts, normalise_rows(encoded), strict=True))
    refs: list[Reference] = []
    vectors: list[NDArray[np.float32]] = []
    for class_name, prompt, texts_ in plan:
        if use_ensemble and len(texts_) > 1:
            refs.append(
                Reference(
                    class_name=class_name,
                    kind=RefKind.PROMPT,
                    prompt=prompt,
                    text=f"ensemble of {len(texts_)} templates: " + " | ".join(texts_),
                )
            )
            vectors.append(ensemble(np.stack([by_text[t] for t in texts_])))
            continue
        for text in texts_:
            refs.append(Reference(class_name=class_name, kind=RefKind.PROMPT, prompt=prompt, text=text))
            vectors.append(by_text[text])
    return refs, np.stack(vectors).astype(np.float32)


def stored_vectors(images: ImageStore, image_ids: list[str]) -> dict[str, NDArray[np.float32]]:
    """Vectors of stored images by id; an id that is not in this model's images is an InvalidInput."""
    for image_id in image_ids:
        check_image_id(image_id)
    wanted = list(dict.fromkeys(image_ids))
    found: dict[str, NDArray[np.float32]] = {}
    for lo in range(0, len(wanted), 1000):
        batch = wanted[lo : lo + 1000]
        result = images.collection.query.fetch_objects(
            filters=Filter.by_id().contains_any(batch),
            limit=len(batch),
            include_vector=True,
            return_properties=[],
        )
        for obj in result.objects:
            vector = vector_of(obj)
            if vector is not None:
                found[str(obj.uuid)] = np.asarray(vector, dtype=np.float32)
    missing = [i for i in wanted if i not in found]
    if missing:
        raise InvalidInput(
            f"unknown image id {missing[0]!r} (no image with this id for model {images.model_id})",
            {"unknown_image_ids": missing[:100]},
        )
    return found


def image_id_references(images: ImageStore, image_ids: dict[str, list[str]]) -> Built:
    all_ids = [i for ids in image_ids.values() for i in ids]
    if not all_ids:
        return [], np.empty((0, 0), np.float32)
    found = stored_vectors(images, all_ids)
    refs: list[Reference] = []
    vectors: list[NDArray[np.float32]] = []
    for class_name, ids in image_ids.items():
        for image_id in dict.fromkeys(ids):
            refs.append(Reference(class_name=class_name, kind=RefKind.IMAGE, image_id=image_id))
            vectors.append(found[image_id])
    return refs, normalise_rows(np.stack(vectors))


def raw_references(dim: int, model_id: str, raw: dict[str, list[list[float]]]) -> Built:
    """Raw embeddings: each must have the model's dimension, be finite and non-zero; stored normalised."""
    refs: list[Reference] = []
    vectors: list[NDArray[np.float32]] = []
    for class_name, rows in raw.items():
        for position, row in enumerate(rows):
            if len(row) != dim:
                raise InvalidInput(
                    f"embedding {position} of class {class_name!r} has dimension {len(row)}; "
                    f"model {model_id} has dimension {dim}",
                    {"class": class_name, "index": position, "dimension": len(row), "expected": dim},
                )
            try:
                vector = normalise_rows(np.asarray([row], dtype=np.float32))[0]
            except InvalidInput as exc:
                raise InvalidInput(
                    f"embedding {position} of class {class_name!r}: {exc.message}",
                    {"class": class_name, "index": position},
                ) from exc
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"embedding {position} of class {class_name!r} is not numbers") from exc
            refs.append(
                Reference(class_name=class_name, kind=RefKind.RAW, sha256=raw_key(vector), position=position)
            )
            vectors.append(vector)
    if not vectors:
        return _empty(dim)
    return refs, np.stack(vectors)


def parse_raw_upload(data: Any) -> dict[str, list[list[float]]]:
    """``{"class": [vector] or [[vector], ...]}`` -> class -> list of vectors."""
    if not isinstance(data, dict) or not data:
        raise InvalidInput('expected a JSON object {"class": [vector] or [[vector], ...]}')
    out: dict[str, list[list[float]]] = {}
    for class_name, value in data.items():
        validate_class_name(class_name)
        if not isinstance(value, list) or not value:
            raise InvalidInput(f"class {class_name!r}: expected a vector or a list of vectors")
        rows = value if all(isinstance(v, list) for v in value) else [value]
        for i, row in enumerate(rows):
            if not isinstance(row, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in row
            ):
                raise InvalidInput(f"embedding {i} of class {class_name!r} is not a list of numbers")
        if len(rows) > MAX_REFS_PER_CLASS:
            raise InvalidInput(f"class {class_name!r}: at most {MAX_REFS_PER_CLASS} embeddings per upload")
        out[class_name] = [[float(x) for x in row] for row in rows]
    return out


def decode_for_model(data: bytes, encoder: Encoder, max_pixels: int) -> DecodedImage:
    return encoder.decoder.decode(data, max_pixels, min_side=encoder.min_decode_side)


def upload_references(
    encoder: Encoder,
    blobs: BlobStore,
    class_name: str,
    files: list[tuple[str, bytes]],
    max_pixels: int,
) -> Built:
    """Uploaded example images: decoded, encoded, and kept in the blob store by content hash so they can
    be re-encoded for another model."""
    if not files:
        raise InvalidInput("no example images: send multipart `files`")
    decodes = []
    refs = []
    for filename, data in files:
        try:
            decodes.append(decode_for_model(data, encoder, max_pixels))
        except InvalidInput as exc:
            raise InvalidInput(f"{filename}: {exc.message}", {"file": filename, **exc.details}) from exc
        sha = hashlib.sha256(data).hexdigest()
        blobs.put_original(sha, data)
        refs.append(Reference(class_name=class_name, kind=RefKind.IMAGE, sha256=sha, filename=filename))
    return refs, normalise_rows(encoder.encode_images(decodes))


def build_classes(
    encoder: Encoder,
    images: ImageStore,
    classes: dict[str, ClassDef],
    templates: list[str],
    use_ensemble: bool,
) -> Built:
    """All references of the given class definitions. A class with nothing in it is an InvalidInput."""
    for class_name, definition in classes.items():
        validate_class_name(class_name)
        if not (definition.prompts or definition.image_ids or definition.vectors):
            raise InvalidInput(
                f"class {class_name!r} has no references: give prompts, image_ids or vectors",
                {"class": class_name},
            )
    dim = encoder.dim
    raw = raw_references(dim, encoder.model_id, {c: d.vectors for c, d in classes.items() if d.vectors})
    stored = image_id_references(images, {c: d.image_ids for c, d in classes.items() if d.image_ids})
    prompts = prompt_references(
        encoder, {c: d.prompts for c, d in classes.items() if d.prompts}, templates, use_ensemble
    )
    refs, vectors = concat([prompts, stored, raw], dim)
    if vectors.shape[1] != dim:
        raise InvalidInput(f"stored vectors have dimension {vectors.shape[1]}, model has {dim}")
    return refs, vectors
