"""API keys and the OpenAPI document, on apps built in-process (no stack needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from indexer.settings import Settings
from search_api.app import create_app
from search_api.auth import PUBLIC_ENDPOINTS, bearer_token, key_matches
from search_api.openapi import build_openapi, openapi_path

KEY = "s3cret-key"


@pytest.fixture()
def keyed_app(tmp_path: Path) -> Flask:
    return create_app(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0", api_keys=f"other,{KEY}"))


def concrete(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: f"x{m.group(1)}", rule)


def test_bearer_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_key_matching() -> None:
    assert key_matches("b", ["a", "b"])
    assert not key_matches("c", ["a", "b"])
    assert not key_matches("", ["a"])
    assert not key_matches("a", [])


def test_api_keys_parse_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", " k1, k2 ,,")
    assert Settings().api_keys == ["k1", "k2"]


def test_every_route_without_a_key_is_401_except_public(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    checked = 0
    for rule in keyed_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            path = concrete(rule.rule)
            if rule.endpoint == "web.asset":
                path = "/web/main.js"
            if rule.endpoint == "health.health":
                continue  # public; it would wait on Weaviate and Redis here (the stack test covers it)
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
                response = client.open(path, method=method, headers=headers)
                if rule.endpoint in PUBLIC_ENDPOINTS:
                    assert response.status_code != 401, (method, path)
                    continue
                assert response.status_code == 401, (method, path, headers, response.status_code)
                body = response.get_json()
                assert body["error"]["code"] == "unauthorized"
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                checked += 1
    assert checked >= 30


def test_public_routes_and_unknown_paths(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    assert client.get("/").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/web/main.js").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/no/such/route").status_code == 401  # unknown paths do not reveal themselves
    assert client.get("/openapi.json").status_code == 401
    ok = client.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    assert ok.get_json()["security"] == [{"bearer": []}]


def test_no_keys_means_no_check(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0"))
    assert app.test_client().get("/openapi.json").status_code == 200


# -- OpenAPI -------------------------------------------------------------------------------------------
def _resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/components/schemas/"), ref
    found: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            out += _refs(value)
        return out
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_openapi_path_conversion() -> None:
    path, params = openapi_path("/images/<image_id>/similar")
    assert path == "/images/{image_id}/similar"
    assert params[0]["name"] == "image_id" and params[0]["in"] == "path" and params[0]["required"]
    path, params = openapi_path("/a/<int:n>/<path:rest>")
    assert path == "/a/{n}/{rest}"
    assert [p["schema"]["type"] for p in params] == ["integer", "string"]


def test_openapi_document_covers_the_url_map(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0"))
    doc = build_openapi(app)
    assert doc["openapi"].startswith("3.1")
    # Every route of the app (but static files) is documented, with every method.
    for rule in app.url_map.iter_rules():
        if rule.endpoint in {"static", "web.asset"}:
            continue
        path, _ = openapi_path(rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], (method, path)
    # Every $ref resolves, and operation ids are unique.
    for ref in _refs(doc):
        _resolve(doc, ref)
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert "security" not in doc  # no keys configured


def test_openapi_uses_the_route_models(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0"))
    doc = build_openapi(app)
    create = doc["paths"]["/collections"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert "name" in _resolve(doc, body["$ref"])["properties"]
    assert "201" in create["responses"]
    error = create["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
    assert _resolve(doc, error)["required"] == ["error"]
    search = doc["paths"]["/search/text"]["post"]["responses"]["200"]["content"]["application/json"]
    assert "results" in _resolve(doc, search["schema"]["$ref"])["properties"]
    upload = doc["paths"]["/collections/{name}/images"]["post"]["requestBody"]["content"]
    files = upload["multipart/form-data"]["schema"]["properties"]["files"]
    assert files["items"]["format"] == "binary"
    thumb = doc["paths"]["/images/{image_id}/thumbnail"]["get"]["responses"]["200"]["content"]
    assert "image/jpeg" in thumb
