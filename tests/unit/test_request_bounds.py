"""JSON bodies bounded before parsing, the public /health view, and cross-site reads (issue 23)."""

from __future__ import annotations

import pytest

from indexer.errors import InvalidInput
from search_api import json_limits
from search_api.guard import OriginPolicy
from search_api.health import public_view


def test_ordinary_json_parses() -> None:
    assert json_limits.load(b'{"a": [1, 2, {"b": null}]}') == {"a": [1, 2, {"b": None}]}
    assert json_limits.load(b"") is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 33 + b"]" * 33, "json_too_deep"),  # parsed, then refused by the walk
        (b"[" * 50_000 + b"]" * 50_000, "json_too_deep"),  # the parser's RecursionError
        (b"[" + b"{}," * 100_000 + b"{}]", "json_too_many_containers"),
        (b"[" + b"0," * 2_000_001 + b"0]", "json_too_many_values"),
    ],
)
def test_hostile_json_is_a_400_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        json_limits.load(body)
    assert caught.value.details["reason"] == reason


def test_thirty_two_levels_pass() -> None:
    assert json_limits.load(b"[" * 32 + b"]" * 32) is not None


def test_public_health_says_only_up_or_down() -> None:
    report = {
        "status": "unavailable",
        "version": "0.1.0",
        "parts": {
            "model": {"ready": True, "model_dir": "/secret/path", "model_id": "m"},
            "redis": {"ready": False, "error": "Connection refused by host-a:6379"},
        },
    }
    assert public_view(report) == {
        "status": "unavailable",
        "parts": {"model": {"ready": True}, "redis": {"ready": False}},
    }


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_cross_site_reads_of_data_are_refused(site: str) -> None:
    policy = OriginPolicy([])
    assert policy.refusal("GET", None, site, "127.0.0.1:8000", data_read=True)
    assert policy.refusal("HEAD", None, site, "127.0.0.1:8000", data_read=True)
    assert policy.refusal("GET", None, site, "127.0.0.1:8000") is None  # the page's shell, /health
    assert policy.refusal("GET", None, "same-origin", "127.0.0.1:8000", data_read=True) is None
    assert policy.refusal("GET", None, None, "127.0.0.1:8000", data_read=True) is None  # not a browser
    other = "http://evil.example"
    assert policy.refusal("GET", other, None, "127.0.0.1:8000", data_read=True)
    assert OriginPolicy([other]).refusal("GET", other, site, "127.0.0.1:8000", data_read=True) is None
