"""`clipsearch index` and `clipsearch search` against the running stack."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from clipsearch.stack import LocalStack
from tests.imagegen import make_image

pytestmark = pytest.mark.integration


def _cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipsearch.cli", *args, "--url", stack.api_url],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )


def test_index_directory_summarises_and_search_prints_hits(stack: LocalStack, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for i in range(3):
        (tmp_path / f"p{i}.jpg").write_bytes(make_image(900 + i))
    (tmp_path / "sub" / "p0-copy.jpg").write_bytes(make_image(900))
    (tmp_path / "readme.txt").write_text("not an image")
    result = _cli(stack, "index", str(tmp_path), "--collection", "cli-test")
    assert result.returncode == 1, result.stderr  # one file failed
    assert "indexed 3, duplicates 1, failed 1" in result.stdout
    assert f"uploading: the service does not read {tmp_path} itself (FOLDER_ROOTS)" in result.stdout
    assert "failed: readme.txt: not an image" in result.stdout
    found = _cli(stack, "search", "anything", "--collection", "cli-test")
    assert found.returncode == 0, found.stderr
    lines = [line for line in found.stdout.splitlines() if line.strip()]
    assert len(lines) == 3 and all("/thumbnail" in line for line in lines)
    assert {"p0.jpg", "p1.jpg", "p2.jpg"} == {line.split()[2] for line in lines}


def _filenames(stack: LocalStack, collection: str) -> set[str]:
    images = requests.get(
        f"{stack.api_url}/collections/{collection}/images", params={"limit": 100}, timeout=30
    )
    return {i["filename"] for i in images.json()["images"]}


def test_index_registers_a_folder_the_service_reads_and_uploads_with_upload(
    stack: LocalStack, folder_root: Path
) -> None:
    """Under the service's FOLDER_ROOTS, on its own disk, `clipsearch index` registers the folder (the
    folder route names files by their path on the server) and uploads nothing; `--upload` uploads (files
    named relative to DIR)."""
    folder = folder_root / f"cli-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    for i in range(3):
        (folder / f"r{i}.jpg").write_bytes(make_image(950 + i))
    (folder / "notes.txt").write_text("not an image")
    registered = _cli(stack, "index", str(folder), "--collection", "cli-registered", "--tags", "reg")
    assert registered.returncode == 1, registered.stderr  # notes.txt failed
    assert "registered, nothing uploaded" in registered.stdout
    assert "indexed 3, duplicates 0, failed 1" in registered.stdout
    real = folder.resolve()
    assert _filenames(stack, "cli-registered") == {str(real / f"r{i}.jpg") for i in range(3)}

    uploaded = _cli(stack, "index", str(folder), "--collection", "cli-uploaded", "--upload")
    assert uploaded.returncode == 1, uploaded.stderr
    assert "registered" not in uploaded.stdout and "uploading" not in uploaded.stdout  # (asked for)
    assert "indexed 3, duplicates 0, failed 1" in uploaded.stdout
    assert _filenames(stack, "cli-uploaded") == {f"r{i}.jpg" for i in range(3)}
