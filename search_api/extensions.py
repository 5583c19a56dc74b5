"""Everything around the routes, installed by create_app in one call: request ids and JSON logs,
Prometheus metrics, API keys, /openapi.json with /docs, and the web page at `/`."""

from __future__ import annotations

from flask import Flask

from indexer.settings import Settings
from search_api import web
from search_api.auth import install_auth
from search_api.guard import install_guard
from search_api.logs import install_request_logging
from search_api.metrics import install_metrics
from search_api.openapi import install_openapi
from search_api.path_ids import install_path_checks
from search_api.services import EXTENSION_KEY, Services


def install_extensions(app: Flask, settings: Settings) -> None:
    svc: Services = app.extensions[EXTENSION_KEY]
    # before_request hooks run in this order: request id, latency timer, the Host and cross-site checks,
    # then the API-key check, so that a 421, 403 or 401 is logged and timed like any other answer.
    install_request_logging(app, settings)
    install_metrics(app, svc)
    install_guard(app, settings)
    install_auth(app, settings.api_keys)
    install_path_checks(app)  # ids in the path, checked once the caller is known
    install_openapi(app, keys_enabled=bool(settings.api_keys))
    app.register_blueprint(web.bp)
