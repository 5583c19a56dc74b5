"""Job items: what an ingest or re-embed job's plan holds for each input, one pydantic model per kind.

An item references the bytes, never carries them. Planning (indexer/sources/plan.py, the API side) builds the
models; the job record in Redis holds their JSON (`JobItem.to_json`: the field names are the stored
format, so items written before this module existed still read back); the worker validates each one
when it reads it back (`check_item`), because Redis is a trust boundary: whoever can write to it can
write items. A valid item names only what planning could have produced: a sha256 of 64 lowercase hex
characters, a staged key or file inside this job's staging area, a folder file inside one of
FOLDER_ROOTS. A bad item is failed with the reason (InvalidInput or Forbidden), never executed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from indexer.errors import Forbidden, InvalidInput
from indexer.settings import Settings
from indexer.storage.blobs import check_sha256
from indexer.storage.objectstore import check_key
from indexer.store.images import check_image_id

MAX_ITEM_TEXT = 8192
Text = Annotated[str, StringConstraints(max_length=MAX_ITEM_TEXT)]
Record = Annotated[int, Field(ge=0)]  # the offset of an entry's central-directory record


class _Item(BaseModel):
    # strict: a forged `"record": "12"` or `true` is refused, not coerced; unknown keys are ignored.
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    name: Text

    @property
    def source(self) -> str:
        """Where the bytes came from, as an image records it: the URL, the server-side path, the
        archive entry, or "upload"."""
        return "upload"

    def checked(self, settings: Settings, job_id: str | None = None) -> Self:
        """The checks that need the deployment (paths inside roots, keys inside the job's prefix)."""
        return self

    def to_json(self) -> dict[str, Any]:
        """The stored form (a JSON object with `kind`), as the job record in Redis holds it."""
        return self.model_dump(mode="json")


class RejectedItem(_Item):
    """Refused at planning (or unreadable in Redis): its outcome is `failed` with the reason."""

    kind: Literal["rejected"] = "rejected"
    reason: Text


class UrlItem(_Item):
    """A URL; the worker parses, resolves and vets it again when it downloads it."""

    kind: Literal["url"] = "url"
    url: Text

    @property
    def source(self) -> str:
        return self.url


class FileItem(_Item):
    """An upload staged on this machine's disk (DATA_DIR/staging/<job>/...)."""

    kind: Literal["file"] = "file"
    path: Text

    def checked(self, settings: Settings, job_id: str | None = None) -> Self:
        _inside(self.path, _staging(settings, job_id), "staged file")
        return self


class ZipItem(_Item):
    """One entry of an archive staged on disk, found by the offset of its directory record."""

    kind: Literal["zip"] = "zip"
    path: Text
    entry: Text
    record: Record

    @property
    def source(self) -> str:
        return f"zip:{self.name}"

    def checked(self, settings: Settings, job_id: str | None = None) -> Self:
        _inside(self.path, _staging(settings, job_id), "staged file")
        return self

    def staged(self, key: str) -> StagedZipItem:
        """The same entry once its archive moved to the object store under `key`."""
        return StagedZipItem(name=self.name, key=key, entry=self.entry, record=self.record)


class FolderItem(_Item):
    """A file of a server-side folder below `root`, one of FOLDER_ROOTS."""

    kind: Literal["folder"] = "folder"
    path: Text
    root: Text

    @property
    def source(self) -> str:
        return self.path

    def checked(self, settings: Settings, job_id: str | None = None) -> Self:
        root = Path(self.root)
        if root not in [r.resolve() for r in settings.folder_roots]:
            raise Forbidden("malformed job item: its root is not one of FOLDER_ROOTS")
        _inside(self.path, root, "folder file")
        return self


class StoredItem(_Item):
    """An image already in the collection, re-encoded from the original kept at ingest (re-embed)."""

    kind: Literal["stored"] = "stored"
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _hash(cls, value: str) -> str:
        return _field_check(check_sha256, value)


class _StagedKey(_Item):
    key: Text

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _field_check(check_key, value)

    def checked(self, settings: Settings, job_id: str | None = None) -> Self:
        if job_id and not self.key.startswith(f"{job_id}/"):
            raise Forbidden("malformed job item: staged key lies outside this job's staging area")
        return self


class StagedItem(_StagedKey):
    """An upload staged in the object store (BLOB_STORE_URL) under the job's prefix."""

    kind: Literal["staged"] = "staged"


class StagedZipItem(_StagedKey):
    """One entry of an archive staged in the object store."""

    kind: Literal["staged_zip"] = "staged_zip"
    entry: Text
    record: Record

    @property
    def source(self) -> str:
        return f"zip:{self.name}"


JobItem = Annotated[
    RejectedItem | UrlItem | FileItem | ZipItem | FolderItem | StoredItem | StagedItem | StagedZipItem,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[JobItem] = TypeAdapter(JobItem)


def rejected(name: str, reason: str) -> RejectedItem:
    """An input refused before any work: an item that fails with ``reason`` alone."""
    return RejectedItem(name=name, reason=reason)


def parse_item(raw: object) -> JobItem:
    """The item that `raw` (one stored item, as JSON-decoded) describes, or InvalidInput with the
    first reason it is not one."""
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(mode="json")
    if not isinstance(raw, dict):
        raise InvalidInput("malformed job item: not an object")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise InvalidInput(_reason(exc, raw)) from None


def check_item(raw: object, settings: Settings, job_id: str | None = None) -> JobItem:
    """An item as read back from Redis, parsed and checked before anything is done with it."""
    return parse_item(raw).checked(settings, job_id)


def item_name(item: object, index: int) -> str:
    """The name to report an item's outcome under, even for an item too malformed to have one."""
    name = item.name if isinstance(item, _Item) else item.get("name") if isinstance(item, dict) else None
    return name[:MAX_ITEM_TEXT] if isinstance(name, str) else f"item {index}"


def _reason(exc: ValidationError, raw: dict[Any, Any], tagged: bool = True) -> str:
    """The first error, naming its field (``tagged``: the location starts with the union's tag)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return f"malformed job item: unknown kind {str(raw.get('kind'))[:40]!r}"
    field = ".".join(str(part) for part in error["loc"][1 if tagged else 0 :]) or "item"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"malformed job item: `{field}`: {message}"[:300]


def _field_check(check: Callable[[str], str], value: str) -> str:
    """``check`` as a pydantic field validator: its InvalidInput becomes the field's ValueError."""
    try:
        return check(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from exc


def _staging(settings: Settings, job_id: str | None) -> Path:
    return settings.staging_dir / job_id if job_id else settings.staging_dir


def resolve_path(path: Path) -> tuple[Path | None, str]:
    """The real path, or None and why not (a symlink loop, a name the OS refuses)."""
    try:
        return path.resolve(strict=True), ""
    except FileNotFoundError:
        return None, "broken symbolic link (its target does not exist)"
    except RuntimeError:  # Python < 3.13 reports a symlink loop this way
        return None, "symbolic link loop"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "symbolic link loop"
        return None, f"cannot resolve path: {exc.strerror or exc}"
    except ValueError as exc:  # an embedded NUL byte
        return None, f"invalid path: {exc}"


def _inside(raw: str, root: Path, what: str) -> Path:
    """`raw` resolved, refused unless it lies inside `root` (resolved)."""
    if "\x00" in raw or not os.path.isabs(raw):
        raise InvalidInput(f"malformed job item: {what} path must be absolute, without NUL bytes")
    path, why = resolve_path(Path(raw))
    if path is None:
        if why.startswith("broken"):
            raise InvalidInput("file disappeared before it could be read")
        raise InvalidInput(f"cannot read file: {why}")
    real_root, _ = resolve_path(root)
    if real_root is None or not path.is_relative_to(real_root):
        raise Forbidden(f"malformed job item: {what} path lies outside {root}")
    return path


class LabelItem(BaseModel):
    """One image of a bulk-label job (indexer/pipeline/labelling.py), stored as ``{"id", "name"}``:
    label jobs hold only these, so they carry no `kind`. The id is checked to be a UUID before it
    reaches a Weaviate filter."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    id: str
    name: Text

    @field_validator("id")
    @classmethod
    def _image_id(cls, value: str) -> str:
        return _field_check(check_image_id, value)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_label_item(raw: object) -> LabelItem:
    """A bulk-label item as read back from Redis, or InvalidInput with the reason it is not one (an
    entry that was not even JSON comes back from JobStore.items as a `rejected` item: its reason)."""
    if isinstance(raw, dict) and raw.get("kind") == "rejected":
        raise InvalidInput(str(raw.get("reason", "malformed job item"))[:300])
    if not isinstance(raw, dict):
        raise InvalidInput("malformed job item: not an object")
    try:
        return LabelItem.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(_reason(exc, raw, tagged=False)) from None
