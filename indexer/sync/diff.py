"""What a folder sync changes: the folder's files (path -> sha256) against the collection's images that
came from that folder, with no I/O.

An image object's id is its content (uuid5 of collection + sha256, indexer/store/schema.py), so:

- a file whose bytes no image of the collection carries is embedded: *replaced* when an image from the
  folder sat at its path (that old image is deleted once the new one is stored), else *added*;
- a file whose bytes an image from the folder carries under another path that no longer holds them is
  *moved*: the image keeps its vector and takes the new path;
- an image from the folder whose bytes no file holds any more is *removed*, unless a file with other
  bytes now sits at its path and those bytes are already indexed: then it counts as *replaced* at once.

An image uploaded from the folder (its source is "upload" and its file name, which holds the path relative
to the folder the client walked, ends the file's path) is *adopted*: it takes the file's path like a move,
so that later syncs track it (a deleted file then removes it). Other uploads are left alone.

Several files with the same bytes are one image (under the first of their paths).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

UPLOAD_SOURCE = "upload"  # an uploaded image's source (indexer/sources/items.py)


@dataclass(frozen=True)
class Indexed:
    """An image of the collection: its id, the path it was indexed from and its bytes' sha256."""

    uuid: str
    path: str
    sha256: str
    filename: str = ""

    def uploaded_as(self, path: str) -> bool:
        """Whether this is an upload of the file at ``path``: its name is the path's tail, whole parts."""
        name = self.filename.lstrip("/")
        return self.path == UPLOAD_SOURCE and bool(name) and path.endswith("/" + name)


@dataclass
class SyncDiff:
    add: list[str] = field(default_factory=list)  # paths to embed as new images
    replace: list[str] = field(default_factory=list)  # paths to embed; the old image there goes after
    moves: list[tuple[Indexed, str]] = field(default_factory=list)  # image -> its new path
    adopt: list[tuple[Indexed, str]] = field(default_factory=list)  # an upload of a file -> the file's path
    remove: list[Indexed] = field(default_factory=list)  # images to delete now
    replaced_at_once: int = 0  # of `remove`: a changed file whose new bytes were already indexed
    unchanged: int = 0

    @property
    def removed(self) -> int:
        return len(self.remove) - self.replaced_at_once

    @property
    def replaced(self) -> int:
        return len(self.replace) + self.replaced_at_once


def diff(files: Mapping[str, str], from_folder: Sequence[Indexed], stored: Mapping[str, Indexed]) -> SyncDiff:
    """``files``: path -> sha256 of every file in the folder; ``from_folder``: the collection's images
    whose path lies in the folder; ``stored``: sha256 -> image, for the collection's images (from the
    folder or not) that carry the bytes of some file."""
    paths_of: dict[str, list[str]] = defaultdict(list)
    for path in sorted(files):
        paths_of[files[path]].append(path)
    at_path = {image.path: image for image in from_folder}
    folder_ids = {image.uuid for image in from_folder}
    out = SyncDiff()
    kept: set[str] = set()
    embedded: set[str] = set()
    for sha, paths in sorted(paths_of.items(), key=lambda kv: kv[1][0]):
        image = stored.get(sha)
        if image is None:
            old = next((p for p in paths if p in at_path), None)
            if old is None:
                out.add.append(paths[0])
            else:
                out.replace.append(old)
                embedded.add(old)
            continue
        kept.add(image.uuid)
        uploaded_from = next((p for p in paths if image.uploaded_as(p)), None)
        if uploaded_from is not None:
            out.adopt.append((image, uploaded_from))
        elif image.path in paths or image.uuid not in folder_ids:
            out.unchanged += 1  # still at its path, or indexed from elsewhere: left alone
        else:
            out.moves.append((image, paths[0]))
    for image in from_folder:
        if image.uuid in kept or image.path in embedded:
            continue  # kept, or deleted once its replacement is stored
        out.remove.append(image)
        if image.path in files:
            out.replaced_at_once += 1
    return out
