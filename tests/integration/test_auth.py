"""API keys over the live stack: every route in the URL map with and without a key, and real HTTP.

The route walk uses a second app (`create_app` with API_KEYS set, wired to the session stack's Redis,
Weaviate and worker) through Flask's test client: gunicorn is not involved in the auth logic. One
more check runs the same app on a real loopback port.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from flask import Flask

from indexer.settings import Settings
from search_api.app import create_app
from search_api.auth import PUBLIC_ENDPOINTS
from tests.integration.helpers import serve_in_thread

pytestmark = pytest.mark.integration

KEYS = ["first-key", "second-key"]


@pytest.fixture(scope="module")
def keyed_app(settings: Settings) -> Flask:
    return create_app(settings.model_copy(update={"api_keys": KEYS}))


def _concrete(rule: str) -> str:
    """A path for a rule, with a harmless value in each variable part."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: f"no-such-{m.group(1)}", rule)


def _routes(app: Flask) -> list[tuple[str, str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = "/web/main.js" if rule.endpoint == "web.asset" else _concrete(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, path))
    return out


def test_every_route_with_and_without_a_key(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    routes = _routes(keyed_app)
    assert len(routes) >= 25
    walked = []
    for endpoint, method, path in routes:
        missing = client.open(path, method=method)
        wrong = client.open(path, method=method, headers={"Authorization": "Bearer not-a-key"})
        # Any configured key works; the body is whatever the route answers to a request with no
        # payload (400/404/415 mostly), never 401 and never a 500.
        good = client.open(path, method=method, headers={"Authorization": f"Bearer {KEYS[1]}"})
        walked.append((endpoint, method, path, missing.status_code, wrong.status_code, good.status_code))
        if endpoint in PUBLIC_ENDPOINTS:
            assert missing.status_code != 401 and wrong.status_code != 401, (method, path)
        else:
            assert missing.status_code == 401, (method, path, missing.status_code)
            assert wrong.status_code == 401, (method, path, wrong.status_code)
            assert missing.get_json()["error"]["code"] == "unauthorized"
        assert good.status_code != 401, (method, path, good.get_json())
        assert good.status_code < 500 or endpoint == "health.health", (
            method,
            path,
            good.get_data(as_text=True),
        )
    # The public set is exactly what the docs promise.
    public = {endpoint for endpoint, *_ in walked if endpoint in PUBLIC_ENDPOINTS}
    assert public == {"health.health", "metrics.metrics", "web.index", "web.docs", "web.asset"}


@pytest.fixture(scope="module")
def keyed_url(keyed_app: Flask) -> Iterator[str]:
    with serve_in_thread(keyed_app) as url:
        yield url


def test_keys_over_real_http(keyed_url: str) -> None:
    assert requests.get(keyed_url + "/health", timeout=30).status_code == 200
    assert requests.get(keyed_url + "/metrics", timeout=30).status_code == 200
    denied = requests.get(keyed_url + "/collections", timeout=30)
    assert denied.status_code == 401
    assert denied.headers["WWW-Authenticate"].startswith("Bearer")
    assert denied.json() == {
        "error": {
            "code": "unauthorized",
            "message": "an API key is required: send 'Authorization: Bearer <key>'",
        }
    }
    wrong = requests.get(keyed_url + "/collections", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "the API key is not valid"
    for key in KEYS:
        ok = requests.get(keyed_url + "/collections", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert ok.status_code == 200, ok.text
        assert "collections" in ok.json()
