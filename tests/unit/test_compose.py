"""docker-compose.yml stays valid, in step with the pinned Weaviate version, and closed by default:
Weaviate needs its API key (no anonymous access), Redis its password, both from `.env` (see
.env.example), and compose refuses to start without them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from indexer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SECRETS = {"REDIS_PASSWORD": "a1" * 16, "WEAVIATE_API_KEY": "b2" * 16}
needs_docker = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config` with only `env_file` for variables (none from this process)."""
    env = {
        k: v for k, v in os.environ.items() if k not in SECRETS and k not in {"API_KEYS", "ALLOW_OPEN_BIND"}
    }
    return subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def filled_env(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / ".env"
    lines = [f"{key}={value}" for key, value in {**SECRETS, **values}.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def config(tmp_path: Path) -> dict[str, Any]:
    result = compose_config(filled_env(tmp_path))
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@needs_docker
def test_docker_compose_config_is_valid_and_pins_weaviate(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {"weaviate", "redis", "api", "worker"}
    assert config["services"]["weaviate"]["image"].endswith(f":{Settings().weaviate_version}")
    assert "ports" not in config["services"]["worker"]  # so that --scale worker=N works
    assert {"weaviate-data", "clipsearch-models"} <= set(config["volumes"])
    for name in ("api", "worker"):
        env = config["services"][name]["environment"]
        assert env["WEAVIATE_URL"] == "http://weaviate:8080"
        assert env["REDIS_URL"].startswith("redis://")
        assert env["REDIS_URL"].endswith("@redis:6379/0")


@needs_docker
def test_weaviate_requires_the_api_key(config: dict[str, Any]) -> None:
    env = config["services"]["weaviate"]["environment"]
    assert env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
    assert env["AUTHENTICATION_APIKEY_ENABLED"] == "true"
    assert env["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == SECRETS["WEAVIATE_API_KEY"]
    assert env["AUTHENTICATION_APIKEY_USERS"]
    for name in ("api", "worker"):  # the clients send it
        assert config["services"][name]["environment"]["WEAVIATE_API_KEY"] == SECRETS["WEAVIATE_API_KEY"]
    assert "ports" not in config["services"]["weaviate"]  # only the compose network reaches it


@needs_docker
def test_redis_requires_the_password_which_stays_off_its_command_line(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    assert "ports" not in redis
    command = " ".join(redis["command"])
    assert SECRETS["REDIS_PASSWORD"] not in command  # argv is visible to every user through `ps`
    assert "requirepass" in command and "$REDIS_PASSWORD" in command
    assert redis["environment"]["REDIS_PASSWORD"] == SECRETS["REDIS_PASSWORD"]
    assert redis["environment"]["REDISCLI_AUTH"] == SECRETS["REDIS_PASSWORD"]  # the healthcheck's redis-cli
    password = SECRETS["REDIS_PASSWORD"]
    for name in ("api", "worker"):
        assert config["services"][name]["environment"]["REDIS_URL"] == f"redis://:{password}@redis:6379/0"


@needs_docker
def test_api_is_published_on_host_loopback_only(config: dict[str, Any]) -> None:
    api = config["services"]["api"]
    assert [port["host_ip"] for port in api["ports"]] == ["127.0.0.1"]
    # The open bind inside the container is said on purpose, and API keys pass through when set.
    assert api["environment"]["ALLOW_OPEN_BIND"] == "true"
    assert (
        "API_KEYS" in api["environment"]
        and "ALLOW_OPEN_BIND" not in config["services"]["worker"]["environment"]
    )


@needs_docker
@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    env_file = filled_env(tmp_path, **{missing: ""})
    result = compose_config(env_file)
    assert result.returncode != 0
    assert missing in result.stderr and ".env.example" in result.stderr


@needs_docker
def test_env_example_as_is_is_refused(tmp_path: Path) -> None:
    # Copied unchanged, .env.example has empty secrets: nothing starts with a known or empty password.
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr or "WEAVIATE_API_KEY" in result.stderr


def test_env_example_documents_every_variable_of_the_compose_file() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    documented = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert SECRETS.keys() <= used
    assert used <= documented, used - documented
    for secret in SECRETS:  # no shared default secret in the example
        line = next(line for line in ENV_EXAMPLE.read_text().splitlines() if line.startswith(f"{secret}="))
        assert line == f"{secret}="
    assert ".env" in (ROOT / ".gitignore").read_text().split()
