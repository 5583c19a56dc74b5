"""GET /health: up or down for everyone; the details (versions, nodes, workers, the model, errors) for a
caller with a valid API key. Without API_KEYS the whole API is open to whoever reaches it (loopback by
default, and cross-site pages are refused), so the details are too: no key can be asked for."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from search_api.auth import bearer_token, key_matches
from search_api.health import health_report, public_view
from search_api.services import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> tuple[Response, int]:
    svc = services()
    report, ok = health_report(svc)
    keys = svc.settings.api_keys
    if keys:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None or not key_matches(token, keys):
            report = public_view(report)
    return jsonify(report), 200 if ok else 503
