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
CLUSTER = ROOT / "docker-compose.cluster.yml"  # the scale-out profile, laid over COMPOSE
ENV_EXAMPLE = ROOT / ".env.example"
SECRETS = {"REDIS_PASSWORD": "a1" * 16, "WEAVIATE_API_KEY": "b2" * 16}
CLUSTER_SECRETS = {"BLOB_STORE_ACCESS_KEY": "c3" * 16, "BLOB_STORE_SECRET_KEY": "d4" * 16}
PASSED_THROUGH = {"API_KEYS", "ALLOW_OPEN_BIND", "WEAVIATE_REPLICATION_FACTOR", "WEAVIATE_CONSISTENCY"}
needs_docker = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")


def compose_config(env_file: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config` of ``files`` (docker-compose.yml alone by default) with only `env_file`
    for variables (none from this process)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRETS
        and k not in CLUSTER_SECRETS
        and k not in PASSED_THROUGH
        and not k.startswith("COMPOSE_")
    }
    chosen = [arg for file in files or (COMPOSE,) for arg in ("-f", str(file))]
    return subprocess.run(
        ["docker", "compose", *chosen, "--env-file", str(env_file), "config", "--format", "json"],
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
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text() + CLUSTER.read_text()))
    documented = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert SECRETS.keys() | CLUSTER_SECRETS.keys() <= used
    assert used <= documented, used - documented
    for secret in [*SECRETS, *CLUSTER_SECRETS]:  # no shared default secret in the example
        line = next(line for line in ENV_EXAMPLE.read_text().splitlines() if line.startswith(f"{secret}="))
        assert line == f"{secret}="
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# The scale-out profile: docker-compose.cluster.yml over docker-compose.yml.


@pytest.fixture()
def cluster_config(tmp_path: Path) -> dict[str, Any]:
    result = compose_config(filled_env(tmp_path, **CLUSTER_SECRETS), COMPOSE, CLUSTER)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


NODES = ("weaviate", "weaviate-2", "weaviate-3")


@needs_docker
def test_cluster_profile_has_three_weaviate_nodes_forming_one_raft_cluster(
    cluster_config: dict[str, Any],
) -> None:
    services = cluster_config["services"]
    assert set(services) == {*NODES, "object-store", "redis", "api", "worker"}
    hostnames = [services[n]["environment"]["CLUSTER_HOSTNAME"] for n in NODES]
    assert len(set(hostnames)) == 3
    volumes = set()
    for name in NODES:
        node = services[name]
        env = node["environment"]
        assert node["image"].endswith(f":{Settings().weaviate_version}")  # every node pinned alike
        assert "ports" not in node
        assert env["RAFT_BOOTSTRAP_EXPECT"] == "3"
        assert sorted(env["RAFT_JOIN"].split(",")) == sorted(hostnames)
        # gossip joins the two other nodes, so that any node can restart and rejoin
        joined = {entry.rsplit(":", 1)[0] for entry in env["CLUSTER_JOIN"].split(",")}
        assert joined == set(NODES) - {name}
        assert {entry.rsplit(":", 1)[1] for entry in env["CLUSTER_JOIN"].split(",")} == {
            env["CLUSTER_GOSSIP_BIND_PORT"]
        }
        assert env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
        assert env["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == SECRETS["WEAVIATE_API_KEY"]
        [volume] = [v["source"] for v in node["volumes"] if v["target"] == "/var/lib/weaviate"]
        volumes.add(volume)
    assert len(volumes) == 3  # each node its own data


@needs_docker
def test_cluster_profile_app_uses_every_node_and_the_object_store(cluster_config: dict[str, Any]) -> None:
    services = cluster_config["services"]
    store = services["object-store"]
    assert store["image"].startswith("rclone/rclone:")
    assert "ports" not in store
    access, secret = CLUSTER_SECRETS["BLOB_STORE_ACCESS_KEY"], CLUSTER_SECRETS["BLOB_STORE_SECRET_KEY"]
    # credentials reach rclone through its environment (one quoted CSV pair), never its command line
    assert store["environment"]["RCLONE_AUTH_KEY"] == f'"{access},{secret}"'
    assert access not in " ".join(store["entrypoint"]) and secret not in " ".join(store["entrypoint"])
    assert access not in " ".join(store["healthcheck"]["test"])
    for name in ("api", "worker"):
        service = services[name]
        env = service["environment"]
        assert env["WEAVIATE_URL"].split(",") == [f"http://{n}:8080" for n in NODES]
        assert env["BLOB_STORE_URL"].startswith("s3://")
        assert env["BLOB_STORE_ENDPOINT"] == "http://object-store:9000"
        assert (env["BLOB_STORE_ACCESS_KEY"], env["BLOB_STORE_SECRET_KEY"]) == (access, secret)
        assert env["WEAVIATE_CONSISTENCY"] == "QUORUM" and env["WEAVIATE_REPLICATION_FACTOR"] == "3"
        assert {"weaviate", "weaviate-2", "weaviate-3", "object-store", "redis"} <= set(service["depends_on"])
    # the secrets of the single-machine stack still apply
    assert services["api"]["environment"]["WEAVIATE_API_KEY"] == SECRETS["WEAVIATE_API_KEY"]
    assert services["worker"]["environment"]["REDIS_URL"].endswith("@redis:6379/0")


@needs_docker
def test_cluster_profile_workers_scale_with_no_volume_shared_with_the_api(
    cluster_config: dict[str, Any],
) -> None:
    services = cluster_config["services"]
    worker, api = services["worker"], services["api"]
    assert "ports" not in worker and "container_name" not in worker  # --scale worker=N
    api_data = {v["source"] for v in api.get("volumes", []) if v["target"] != "/models"}
    worker_data = {v["source"] for v in worker.get("volumes", []) if v["target"] != "/models"}
    assert not api_data and not worker_data
    assert "clipsearch-data" not in {v["source"] for v in worker.get("volumes", [])}
    # DATA_DIR is each container's own (no volume mounted at or above it)
    mounted = [v["target"] for v in worker.get("volumes", [])]
    assert not any(worker["environment"]["DATA_DIR"].startswith(target) for target in mounted)
    assert [p["host_ip"] for p in api["ports"]] == ["127.0.0.1"]  # still on the host's loopback only


@needs_docker
def test_single_machine_stack_keeps_its_shared_data_volume(config: dict[str, Any]) -> None:
    # without the profile nothing changes: one Weaviate, the API and the workers share /data
    assert "object-store" not in config["services"]
    for name in ("api", "worker"):
        assert "clipsearch-data" in {v["source"] for v in config["services"][name]["volumes"]}
        assert "BLOB_STORE_URL" not in config["services"][name]["environment"]


@needs_docker
@pytest.mark.parametrize("missing", sorted(CLUSTER_SECRETS))
def test_cluster_profile_refuses_to_start_without_an_object_store_secret(
    tmp_path: Path, missing: str
) -> None:
    env_file = filled_env(tmp_path, **{**CLUSTER_SECRETS, missing: ""})
    result = compose_config(env_file, COMPOSE, CLUSTER)
    assert result.returncode != 0
    assert missing in result.stderr and ".env.example" in result.stderr
    assert compose_config(env_file).returncode == 0  # the single-machine stack does not need them
