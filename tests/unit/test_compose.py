"""docker-compose.yml stays valid and in step with the pinned Weaviate version."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from indexer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")
def test_docker_compose_config_is_valid_and_pins_weaviate() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert set(config["services"]) == {"weaviate", "redis", "api", "worker"}
    assert config["services"]["weaviate"]["image"].endswith(f":{Settings().weaviate_version}")
    assert "ports" not in config["services"]["worker"]  # so that --scale worker=N works
    assert {"weaviate-data", "clipsearch-models"} <= set(config["volumes"])
    for name in ("api", "worker"):
        env = config["services"][name]["environment"]
        assert env["WEAVIATE_URL"] == "http://weaviate:8080"
        assert env["REDIS_URL"].startswith("redis://redis:")
