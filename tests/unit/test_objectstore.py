"""The object store's local backend, key safety, the blob store on top of it, and WEAVIATE_URL clusters.
(The S3 backend runs against a real rclone `serve s3` in tests/integration/test_scale_out.py.)"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from indexer.errors import InvalidInput, MissingOriginal
from indexer.settings import Settings
from indexer.storage.blobs import BlobStore
from indexer.storage.objectstore import LocalObjectStore, ObjectMissing, check_key, open_store
from indexer.storage.staging import staging_store
from indexer.store.connection import _grpc_target, weaviate_nodes


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a/b\x00", "a b", "..", "a/"])
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidInput):
        check_key(key)


def test_local_store_round_trip(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path).child("staging")
    size, head = store.put_stream("job/000000-a.jpg", io.BytesIO(b"\xff\xd8\xff" + b"x" * 100))
    assert (size, head[:3]) == (103, b"\xff\xd8\xff")
    assert store.exists("job/000000-a.jpg") and (tmp_path / "staging/job/000000-a.jpg").is_file()
    assert store.get_bytes("job/000000-a.jpg").startswith(b"\xff\xd8")
    with pytest.raises(ObjectMissing):
        store.get_bytes("job/missing")
    assert store.delete_prefix("job") == 1 and not store.exists("job/000000-a.jpg")
    assert store.delete_prefix("job") == 0


def test_blob_store_keeps_paths_locally_and_reads_through_the_store(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    sha = "ab" + "0" * 62
    assert blobs.put_original(sha, b"data") == blobs.original_path(sha)
    assert blobs.read_original(sha) == b"data" and blobs.has(sha) and not blobs.has(sha, "thumbnail")
    with pytest.raises(MissingOriginal):
        blobs.read_thumbnail(sha)
    assert blobs.delete(sha) == 1 and blobs.delete(sha) == 0


def test_default_settings_stay_on_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert open_store(settings).local_root == tmp_path
    assert staging_store(settings).local_root == settings.staging_dir
    assert BlobStore.from_settings(settings).root == settings.blob_dir


def test_a_cluster_url_lists_every_node_and_one_grpc_target_fails_over() -> None:
    settings = Settings(
        weaviate_url="http://127.0.0.1:8080?grpc_port=50051, http://127.0.0.1:8081?grpc_port=50052"
    )
    nodes = weaviate_nodes(settings)
    assert [(n.url, n.port, n.grpc_port) for n in nodes] == [
        ("http://127.0.0.1:8080", 8080, 50051),
        ("http://127.0.0.1:8081", 8081, 50052),
    ]
    assert _grpc_target(nodes[1], nodes) == ("ipv4:127.0.0.1:50052,127.0.0.1", 50051)
    named = weaviate_nodes(Settings(weaviate_url="http://w1:8080,http://w2:8080", weaviate_grpc_port=50051))
    assert _grpc_target(named[0], named) == ("w1", 50051)  # host names: reconnect-based failover only


class _RecordingS3:
    """Only what S3ObjectStore.put_stream calls: records each upload (its source and bytes)."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, object, bytes]] = []

    def upload_fileobj(self, source: io.BufferedIOBase, bucket: str, key: str) -> None:
        self.uploads.append((key, source, source.read()))

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        self.uploads.append((key, path, Path(path).read_bytes()))


def test_s3_put_stream_uploads_a_seekable_upload_from_where_it_is() -> None:
    from indexer.storage.objectstore import S3ObjectStore

    client = _RecordingS3()
    store = S3ObjectStore(client, "bucket", "pre", "")  # type: ignore[arg-type]
    spooled = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"y" * 50)
    spooled.seek(20)  # wherever the transport left it
    assert store.put_stream("job/000000-a.png", spooled) == (58, b"\x89PNG\r\n\x1a\n" + b"y" * 8)
    assert client.uploads == [("pre/job/000000-a.png", spooled, b"\x89PNG\r\n\x1a\n" + b"y" * 50)]


def test_stage_spooled_renames_the_spool_file_into_the_staging_area(tmp_path: Path) -> None:
    from indexer.storage.staging import stage_spooled

    spool = tmp_path / "staging" / ".incoming" / "part-1"
    spool.parent.mkdir(parents=True)
    with spool.open("xb+") as stream:
        stream.write(b"\xff\xd8\xff\xe0" + b"z" * 100)  # unflushed: staging flushes it
        item = stage_spooled(tmp_path / "staging" / "job", 3, "a/b c.jpg", stream, spool)
    staged = tmp_path / "staging" / "job" / "000003-b_c.jpg"
    assert (item.kind, getattr(item, "path", None), item.name) == ("file", str(staged), "a/b c.jpg")
    assert not spool.exists() and staged.read_bytes() == b"\xff\xd8\xff\xe0" + b"z" * 100
    empty = tmp_path / "staging" / ".incoming" / "part-2"
    with empty.open("xb+") as stream:
        refused = stage_spooled(tmp_path / "staging" / "job", 4, "e.jpg", stream, empty)
    assert refused.kind == "rejected" and "empty" in getattr(refused, "reason", "")
