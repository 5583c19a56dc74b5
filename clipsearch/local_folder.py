"""Whether the service reads the same files as this machine at a folder's path: then `clipsearch index`
registers the folder (POST /collections/<c>/folder) instead of uploading its bytes.

The service answers POST /folders/identity for a path under its FOLDER_ROOTS with the real path and the
file identity it sees (inode, size, modification and change times in ns). The folder and one of its files
must match this machine's own stat: the change time is set by the kernel and cannot be copied, so two
disks that merely hold the same path (another machine, a container with other mounts) do not match.
"""

from __future__ import annotations

from pathlib import Path

from clipsearch.client import ApiClient
from indexer.errors import ClipsearchError
from indexer.services.folders import identity_of


def _same(api: ApiClient, path: Path) -> bool:
    try:
        seen = api.call("POST", "/folders/identity", json={"path": str(path)})
    except ClipsearchError:  # not under FOLDER_ROOTS, folders off, or an older service without the route
        return False
    is_dir, inode, size, mtime_ns, ctime_ns = identity_of(path)
    return bool(
        seen.get("path") == str(path)
        and (seen.get("is_dir"), seen.get("inode"), seen.get("size")) == (is_dir, inode, size)
        and (seen.get("mtime_ns"), seen.get("ctime_ns")) == (mtime_ns, ctime_ns)
    )


def served_folder(api: ApiClient, root: Path, paths: list[Path]) -> Path | None:
    """The real path of `root` when the service reads the same folder (and the first of `paths`, when
    there is one) as this machine does; None when it cannot, or does not say so."""
    real = root.resolve()
    probes = [real] + [p.resolve() for p in paths[:1]]
    return real if all(_same(api, p) for p in probes) else None


def register_folder(
    api: ApiClient, collection: str, folder: Path, tags: str = ""
) -> tuple[list[str], int, list[dict[str, str]]]:
    """Index `folder` through the folder route: the job ids, the files accepted, and those refused up
    front (the same shapes as ApiClient.upload_paths)."""
    body = api.call(
        "POST",
        f"/collections/{collection}/folder",
        expect=(202, 400),
        json={"path": str(folder), "tags": [t.strip() for t in tags.split(",") if t.strip()]},
    )
    if "error" in body:
        details = body["error"].get("details") or {}
        if "rejected" not in details:
            raise ClipsearchError(body["error"]["message"])
        return [], 0, list(details["rejected"])
    return [body["job_id"]], int(body["accepted"]), list(body["rejected"])
