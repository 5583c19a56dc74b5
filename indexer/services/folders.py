"""Server-side folders as a client sees them: what the service reads at a path under FOLDER_ROOTS, so
that a client on the same disk can register a folder instead of uploading it."""

from __future__ import annotations

from indexer.settings import Settings
from indexer.sources.identity import PathIdentity, identity_of, path_identity

__all__ = ["PathIdentity", "identify", "identity_of"]  # identity_of: what a client compares, on its side


def identify(path: str, settings: Settings) -> PathIdentity:
    """The service's view of `path` (real path, inode, size, times); Forbidden outside FOLDER_ROOTS."""
    return path_identity(path, settings)
