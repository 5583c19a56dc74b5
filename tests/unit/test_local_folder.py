"""`clipsearch index` registers a folder only when the service sees the very same files at its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clipsearch.client import ApiClient
from clipsearch.local_folder import served_folder
from indexer.errors import ClipsearchError, Forbidden, NotFound
from indexer.settings import Settings
from indexer.sources.identity import path_identity


class ServiceView(ApiClient):
    """The identity route answered in-process by the core it calls, with an optional change to the
    answer (another disk that holds the same path)."""

    def __init__(self, settings: Settings, change: dict[str, Any] | None = None) -> None:
        super().__init__("http://unused")
        self.settings = settings
        self.change = change or {}
        self.asked: list[str] = []

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        assert (method, path) == ("POST", "/folders/identity")
        self.asked.append(kwargs["json"]["path"])
        return {**path_identity(kwargs["json"]["path"], self.settings).model_dump(), **self.change}


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "root" / "photos"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"a")
    return folder


def test_a_folder_the_service_reads_itself_is_served(tmp_path: Path, photos: Path) -> None:
    api = ServiceView(Settings(data_dir=tmp_path / "data", folder_roots=[tmp_path / "root"]))
    assert served_folder(api, photos, [photos / "a.jpg"]) == photos.resolve()
    assert api.asked == [str(photos.resolve()), str((photos / "a.jpg").resolve())]


@pytest.mark.parametrize(
    "change", [{"inode": 1}, {"ctime_ns": 1}, {"mtime_ns": 1}, {"size": 99}, {"path": "/elsewhere/photos"}]
)
def test_the_same_path_on_another_disk_is_not(tmp_path: Path, photos: Path, change: dict[str, Any]) -> None:
    api = ServiceView(Settings(data_dir=tmp_path / "data", folder_roots=[tmp_path / "root"]), change)
    assert served_folder(api, photos, [photos / "a.jpg"]) is None


def test_a_folder_outside_the_roots_is_uploaded(tmp_path: Path, photos: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", folder_roots=[tmp_path / "other"])
    with pytest.raises(Forbidden):
        path_identity(str(photos), settings)

    class Refusing(ServiceView):
        def call(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
            raise ClipsearchError("not under an allowed folder root (403)")

    assert served_folder(Refusing(settings), photos, []) is None


def test_identity_refuses_what_is_not_there_or_not_absolute(tmp_path: Path, photos: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", folder_roots=[tmp_path / "root"])
    with pytest.raises(NotFound):
        path_identity(str(photos / "missing.jpg"), settings)
    with pytest.raises(ClipsearchError):
        path_identity("photos", settings)
    with pytest.raises(Forbidden):
        path_identity(str(photos), Settings(data_dir=tmp_path / "data"))
