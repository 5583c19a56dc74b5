"""Unit tests see the defaults of Settings, whatever the integration session exported before them."""

from __future__ import annotations

import pytest

from indexer.settings import Settings

# Every variable that Settings reads: the integration fixtures set some of them for the whole process.
SETTINGS_VARIABLES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def _default_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
