"""Unit tests see the defaults of Settings, whatever the integration session exported before them; those
that need Redis get a real redis-server (`redis_client`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from clipsearch.redis_server import RedisServer
from indexer.settings import Settings

# Every variable that Settings reads: the integration fixtures set some of them for the whole process.
SETTINGS_VARIABLES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def _default_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the unit tests that need Redis's scripts (the job store, blob pins):
    the same managed server `clipsearch up` runs, on a free loopback port, started once per session."""
    root = tmp_path_factory.mktemp("unit-redis")
    server = RedisServer(root / "data", root / "logs")
    (root / "data").mkdir()
    (root / "logs").mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's redis-server, on an empty database."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()
