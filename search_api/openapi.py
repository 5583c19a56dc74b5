"""/openapi.json, generated from the app's URL map and the models that routes declare with @endpoint.

The request and response schemas are the same pydantic models that validate requests and shape
responses (search_api/validation.py), exported with `models_json_schema` into `components/schemas`
(validation mode for what clients send, serialization mode for what they get back; pydantic names the
two variants apart when they differ). Routes without a spec still appear, with a generic JSON body.
Every operation documents the error body `{"error": {"code", "message", "details"}}` for the 4xx and
503 statuses that search_api/errors.py produces.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from werkzeug.routing import Rule

from indexer import __version__
from search_api.auth import PUBLIC_ENDPOINTS
from search_api.validation import ENDPOINTS, EndpointSpec

REF = "#/components/schemas/{model}"
CACHE_KEY = "clipsearch.openapi"
KEYS_FLAG = "CLIPSEARCH_API_KEYS_ENABLED"

# Not API operations: static files of the page and the docs.
HIDDEN_ENDPOINTS = frozenset({"static", "web.asset"})

_ARG = re.compile(
    r"<(?:(?P<conv>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<args>.*?)\))?:)?(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>"
)
_CONVERTER_SCHEMA: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
    "path": {"type": "string"},
    "string": {"type": "string"},
    "default": {"type": "string"},
    "any": {"type": "string"},
}
# Form fields that carry files (multipart); the rest are text fields.
FILE_FIELDS = {"files": "array", "file": "single", "image": "single", "images": "array"}
ERROR_STATUSES = ("400", "403", "404", "409", "413", "415", "422", "503")

bp = Blueprint("openapi", __name__)


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. invalid_input, not_found")
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error response: {"error": {"code", "message", "details"}}."""

    error: ErrorDetail


def openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """`/images/<int:image_id>` -> (`/images/{image_id}`, [its path parameter])."""
    params: list[dict[str, Any]] = []

    def repl(match: re.Match[str]) -> str:
        conv = match.group("conv") or "default"
        schema = dict(_CONVERTER_SCHEMA.get(conv, {"type": "string"}))
        if conv in {"default", "string"}:
            schema["minLength"] = 1
            schema["pattern"] = "^[^/]+$"
        params.append({"name": match.group("name"), "in": "path", "required": True, "schema": schema})
        return "{" + match.group("name") + "}"

    return _ARG.sub(repl, rule), params


def spec_for(app: Flask, rule: Rule) -> EndpointSpec | None:
    view = app.view_functions.get(rule.endpoint)
    if view is None:
        return None
    return ENDPOINTS.get(f"{view.__module__}.{view.__qualname__}")


def _doc_summary(app: Flask, rule: Rule) -> str:
    view = app.view_functions.get(rule.endpoint)
    doc = (view.__doc__ or "").strip() if view else ""
    return doc.splitlines()[0] if doc else rule.endpoint


def _model_schemas(
    specs: list[EndpointSpec],
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]], dict[str, Any]]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for spec in specs:
        if spec.body is not None:
            wanted.append((spec.body, "validation"))
        if spec.query is not None:
            wanted.append((spec.query, "validation"))
        if spec.response is not None:
            wanted.append((spec.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template=REF)
    return refs, top.get("$defs", {})  # type: ignore[return-value]


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        resolved: dict[str, Any] = defs[ref.rsplit("/", 1)[1]]
        return resolved
    return schema


def _query_params(model_schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(model_schema.get("required", []))
    params = []
    for name, prop in model_schema.get("properties", {}).items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _multipart_schema(fields: dict[str, str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, description in fields.items():
        kind = FILE_FIELDS.get(name)
        if kind == "array":
            props[name] = {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "description": description,
            }
        elif kind == "single":
            props[name] = {"type": "string", "format": "binary", "description": description}
        else:
            props[name] = {"type": "string", "description": description}
    required = [name for name in fields if name in FILE_FIELDS]
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def _error_responses(public: bool, keys_enabled: bool) -> dict[str, Any]:
    ref = {"$ref": REF.format(model="ErrorBody")}
    out: dict[str, Any] = {}
    statuses = list(ERROR_STATUSES)
    if keys_enabled and not public:
        statuses.append("401")
    for status in sorted(statuses):
        out[status] = {"description": "error", "content": {"application/json": {"schema": ref}}}
    return out


def _operation(
    app: Flask,
    rule: Rule,
    method: str,
    spec: EndpointSpec | None,
    refs: dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]],
    defs: dict[str, Any],
    path_params: list[dict[str, Any]],
    keys_enabled: bool,
) -> dict[str, Any]:
    public = rule.endpoint in PUBLIC_ENDPOINTS
    blueprint = rule.endpoint.split(".", 1)[0] if "." in rule.endpoint else "default"
    op: dict[str, Any] = {
        "operationId": f"{rule.endpoint}_{method.lower()}".replace(".", "_"),
        "summary": spec.summary if spec else _doc_summary(app, rule),
        "tags": (spec.tags if spec and spec.tags else [blueprint]),
    }
    params = list(path_params)
    if spec and spec.query is not None:
        params += _query_params(_resolve(refs[(spec.query, "validation")], defs))
    if params:
        op["parameters"] = params

    content: dict[str, Any] = {}
    if spec and spec.body is not None and method in {"POST", "PUT", "PATCH"}:
        content["application/json"] = {"schema": refs[(spec.body, "validation")]}
    if spec and spec.multipart and method in {"POST", "PUT", "PATCH"}:
        content["multipart/form-data"] = {"schema": _multipart_schema(spec.multipart)}
    if content:
        op["requestBody"] = {"required": True, "content": content}

    status = str(spec.status) if spec else "200"
    if spec and spec.binary_response:
        ok_content: dict[str, Any] = {
            spec.binary_response: {"schema": {"type": "string", "format": "binary"}}
        }
    elif spec and spec.response is not None:
        ok_content = {"application/json": {"schema": refs[(spec.response, "serialization")]}}
    else:
        ok_content = {"application/json": {"schema": {"type": "object"}}}
    if spec is None and rule.endpoint in SPECIAL_RESPONSES:
        ok_content = SPECIAL_RESPONSES[rule.endpoint]
    responses: dict[str, Any] = {status: {"description": "success", "content": ok_content}}
    if status == "204":
        responses[status] = {"description": "done; no body"}
    responses.update(_error_responses(public, keys_enabled))
    if rule.endpoint == "health.health":
        responses["503"] = {"description": "a part is down", "content": {"application/json": {"schema": {}}}}
    op["responses"] = responses
    if keys_enabled and public:
        op["security"] = []
    return op


SPECIAL_RESPONSES: dict[str, dict[str, Any]] = {
    "metrics.metrics": {"text/plain": {"schema": {"type": "string"}}},
    "web.index": {"text/html": {"schema": {"type": "string"}}},
    "web.docs": {"text/html": {"schema": {"type": "string"}}},
}


def build_openapi(app: Flask) -> dict[str, Any]:
    keys_enabled = bool(app.config.get(KEYS_FLAG))
    rules = sorted(
        (r for r in app.url_map.iter_rules() if r.endpoint not in HIDDEN_ENDPOINTS),
        key=lambda r: (r.rule, r.endpoint),
    )
    specs = [spec for rule in rules if (spec := spec_for(app, rule)) is not None]
    refs, defs = _model_schemas(specs)
    paths: dict[str, dict[str, Any]] = {}
    for rule in rules:
        path, path_params = openapi_path(rule.rule)
        spec = spec_for(app, rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                app, rule, method, spec, refs, defs, path_params, keys_enabled
            )
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "clipsearch",
            "version": __version__,
            "description": "Self-hosted semantic image search: CLIP through ONNX Runtime, Weaviate, Celery.",
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an API key"}},
        },
    }
    if keys_enabled:
        doc["security"] = [{"bearer": []}]
    return doc


def install_openapi(app: Flask, keys_enabled: bool) -> None:
    app.config[KEYS_FLAG] = keys_enabled
    app.register_blueprint(bp)


@bp.get("/openapi.json")
def spec() -> Response:
    """The OpenAPI 3.1 document of this API."""
    doc = current_app.extensions.get(CACHE_KEY)
    if doc is None:
        doc = current_app.extensions[CACHE_KEY] = build_openapi(current_app)
    return jsonify(doc)
