from __future__ import annotations

from flask import Blueprint, Response, jsonify

from search_api.health import health_report
from search_api.services import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> tuple[Response, int]:
    report, ok = health_report(services())
    return jsonify(report), 200 if ok else 503
