"""Job items (indexer/sources/items.py): one pydantic model per kind, stored in Redis as the JSON that jobs
written before the models existed hold too, and refused with a reason when forged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from indexer.errors import Forbidden, InvalidInput
from indexer.jobs.store import new_job_id
from indexer.settings import Settings
from indexer.sources.items import (
    FileItem,
    FolderItem,
    JobItem,
    LabelItem,
    RejectedItem,
    StagedItem,
    StagedZipItem,
    StoredItem,
    UrlItem,
    ZipItem,
    check_item,
    item_name,
    parse_item,
    parse_label_item,
)
from indexer.storage import staging
from indexer.storage.objectstore import LocalObjectStore
from indexer.storage.staging import stage_zip_items

JOB = new_job_id()
SHA = "0123456789abcdef" * 4

# The stored form of every kind, exactly as the planning code wrote it before the models existed.
LEGACY: list[tuple[type[Any], dict[str, Any], str]] = [
    (RejectedItem, {"kind": "rejected", "name": "a.txt", "reason": "not an image"}, "upload"),
    (UrlItem, {"kind": "url", "url": "http://127.0.0.1:1/x.jpg", "name": "http://127.0.0.1:1/x.jpg"}, ""),
    (FileItem, {"kind": "file", "path": "/data/staging/j/000001-a.jpg", "name": "a.jpg"}, "upload"),
    (
        ZipItem,
        {"kind": "zip", "path": "/data/staging/j/archive.zip", "entry": "d/a.jpg", "record": 12, "name": "z"},
        "zip:z",
    ),
    (FolderItem, {"kind": "folder", "path": "/photos/a.jpg", "root": "/photos", "name": "/photos/a.jpg"}, ""),
    (StoredItem, {"kind": "stored", "sha256": SHA, "name": "a.jpg"}, "upload"),
    (StagedItem, {"kind": "staged", "key": f"{JOB}/000001-a.jpg", "name": "a.jpg"}, "upload"),
    (
        StagedZipItem,
        {"kind": "staged_zip", "key": f"{JOB}/archive.zip", "entry": "a.jpg", "record": 0, "name": "z:a"},
        "zip:z:a",
    ),
]


@pytest.mark.parametrize(("model", "stored", "source"), LEGACY, ids=[s["kind"] for _, s, _ in LEGACY])
def test_each_kind_round_trips_through_its_stored_json(
    model: type[Any], stored: dict[str, Any], source: str
) -> None:
    item = parse_item(json.loads(json.dumps(stored)))
    assert type(item) is model
    assert item.to_json() == stored  # same field names: items of in-flight jobs still read back
    assert parse_item(json.loads(json.dumps(item.to_json()))) == item
    assert item.source == (source or stored.get("url") or stored.get("path"))
    assert item_name(item, 3) == item_name(stored, 3) == stored["name"]


def test_built_items_carry_their_kind() -> None:
    built: list[JobItem] = [
        RejectedItem(name="n", reason="r"),
        UrlItem(url="http://x/", name="n"),
        FileItem(path="/p", name="n"),
        ZipItem(path="/p", entry="e", record=1, name="n"),
        FolderItem(path="/r/p", root="/r", name="n"),
        StoredItem(sha256=SHA, name="n"),
        StagedItem(key="j/k", name="n"),
        StagedZipItem(key="j/k", entry="e", record=1, name="n"),
    ]
    assert [i.to_json()["kind"] for i in built] == [s["kind"] for _, s, _ in LEGACY]


BAD: list[tuple[object, str]] = [
    (["not", "a", "dict"], "not an object"),
    ("stored", "not an object"),
    ({"name": "x"}, "unknown kind 'None'"),
    ({"kind": "exec", "cmd": "rm -rf /", "name": "x"}, "unknown kind 'exec'"),
    ({"kind": "file", "name": "x"}, "`path`: Field required"),
    ({"kind": "file", "path": "/p"}, "`name`: Field required"),
    ({"kind": "file", "path": 7, "name": "x"}, "`path`: Input should be a valid string"),
    ({"kind": "url", "url": "x" * 9000, "name": "x"}, "`url`: String should have at most 8192"),
    ({"kind": "stored", "sha256": "../../../../etc/passwd", "name": "s"}, "64 lowercase hex"),
    ({"kind": "stored", "sha256": SHA.upper(), "name": "s"}, "64 lowercase hex"),
    ({"kind": "staged", "key": "../other/x", "name": "s"}, "`key`: malformed object key"),
    ({"kind": "staged", "key": "/abs", "name": "s"}, "`key`: malformed object key"),
    ({"kind": "zip", "path": "/p", "entry": "e", "name": "z"}, "`record`: Field required"),
    ({"kind": "zip", "path": "/p", "entry": "e", "record": -1, "name": "z"}, "greater than or equal to 0"),
    ({"kind": "zip", "path": "/p", "entry": "e", "record": "12", "name": "z"}, "valid integer"),
    ({"kind": "staged_zip", "key": "j/a", "entry": "e", "record": True, "name": "z"}, "valid integer"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_malformed_items_are_refused_with_the_reason(raw: object, reason: str) -> None:
    with pytest.raises(InvalidInput, match="malformed") as caught:
        parse_item(raw)
    assert reason in caught.value.message


def test_checks_that_need_the_deployment(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"x")
    settings = Settings(data_dir=tmp_path / "data", folder_roots=[root])
    staged = settings.staging_dir / JOB
    staged.mkdir(parents=True)
    (staged / "f.jpg").write_bytes(b"x")
    ok = FileItem(path=str(staged / "f.jpg"), name="f")
    assert check_item(ok.to_json(), settings, JOB) == ok
    folder = {"kind": "folder", "path": str(root / "a.jpg"), "root": str(root.resolve()), "name": "a"}
    assert isinstance(check_item(folder, settings, JOB), FolderItem)
    key = {"kind": "staged", "key": f"{JOB}/1-a.jpg", "name": "a"}
    assert isinstance(check_item(key, settings, JOB), StagedItem)
    refused: list[tuple[dict[str, Any], type[Exception], str]] = [
        (ok.to_json(), Forbidden, "outside"),  # checked against another job's staging area below
        ({"kind": "file", "path": "/etc/passwd", "name": "f"}, Forbidden, "outside"),
        (
            {"kind": "zip", "path": "/etc/passwd", "entry": "e", "record": 0, "name": "z"},
            Forbidden,
            "outside",
        ),
        ({"kind": "file", "path": "rel/x", "name": "f"}, InvalidInput, "absolute"),
        ({"kind": "file", "path": str(staged / "gone.jpg"), "name": "f"}, InvalidInput, "disappeared"),
        ({"kind": "folder", "path": "/etc/passwd", "root": "/", "name": "f"}, Forbidden, "FOLDER_ROOTS"),
        ({**folder, "path": "/etc/passwd"}, Forbidden, "outside"),
        ({"kind": "staged", "key": "another-job/1-a.jpg", "name": "a"}, Forbidden, "staging area"),
    ]
    for index, (raw, error, fragment) in enumerate(refused):
        job = new_job_id() if index == 0 else JOB
        with pytest.raises(error, match=fragment):
            check_item(raw, settings, job)


def test_a_staged_archive_moves_its_entries_to_the_object_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "data", blob_store_url="s3://bucket/prefix")
    store = LocalObjectStore(tmp_path / "store")  # stands in for the bucket's staging/ prefix
    monkeypatch.setattr(staging, "staging_store", lambda _: store)
    archive = settings.staging_dir / JOB / "archive.zip"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"PK")
    items: list[JobItem] = [
        ZipItem(path=str(archive), entry="a.jpg", record=5, name="z:a.jpg"),
        RejectedItem(name="z:../x", reason="zip-slip"),
    ]
    staged = stage_zip_items(settings, JOB, archive, items)
    assert staged == [
        StagedZipItem(key=f"{JOB}/archive.zip", entry="a.jpg", record=5, name="z:a.jpg"),
        items[1],
    ]
    assert "path" not in staged[0].to_json()
    assert store.get_bytes(f"{JOB}/archive.zip") == b"PK" and not archive.exists()


def test_label_items_keep_their_stored_form_and_refuse_what_is_not_an_id() -> None:
    image_id = "3f2b1c4e-8a5d-4e1f-9b2c-7d6e5f4a3b2c"
    stored = {"id": image_id, "name": image_id}
    assert parse_label_item(json.loads(json.dumps(stored))).to_json() == stored
    assert LabelItem(id=image_id, name="n").to_json() == {"id": image_id, "name": "n"}
    refused: list[tuple[object, str]] = [
        ({"id": "') OR 1=1 --", "name": "x"}, "`id`: malformed image id"),
        ({"name": "x"}, "`id`: Field required"),
        ({"id": 7, "name": "x"}, "`id`: Input should be a valid string"),
        (["x"], "not an object"),
        ({"kind": "rejected", "name": "item 3", "reason": "malformed job item: not JSON"}, "not JSON"),
    ]
    for raw, reason in refused:
        with pytest.raises(InvalidInput) as caught:
            parse_label_item(raw)
        assert reason in caught.value.message
