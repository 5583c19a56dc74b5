"""The app factory."""

from __future__ import annotations

from flask import Flask

from indexer.settings import Settings
from search_api.errors import register_error_handlers
from search_api.extensions import install_extensions
from search_api.json_limits import install_json_limits
from search_api.routes import (
    backups,
    classes,
    classifiers,
    collections,
    embeddings,
    export,
    folders,
    health,
    images,
    jobs,
    search,
    similarity,
    sync,
    upload_sessions,
    uploads,
)
from search_api.services import Services, install
from search_api.upload_spool import install_spooling


def create_app(settings: Settings | None = None, svc: Services | None = None) -> Flask:
    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    install_spooling(app, settings)  # multipart files written once, into the staging area (issue 9)
    install_json_limits(app, settings)  # JSON bodies: MAX_JSON_BYTES, nesting (issue 23)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install(app, svc or Services.from_settings(settings))
    register_error_handlers(app)
    for blueprint in (health.bp, collections.bp, uploads.bp, jobs.bp, images.bp, search.bp, embeddings.bp):
        app.register_blueprint(blueprint)
    for blueprint in (classes.bp, classifiers.bp, similarity.bp, export.bp):  # classification (issue 5)
        app.register_blueprint(blueprint)
    app.register_blueprint(upload_sessions.bp)  # the web page's folder upload (issue 16)
    app.register_blueprint(backups.bp)  # operators' backups and restores (issue 25)
    app.register_blueprint(folders.bp)  # clipsearch index registers a folder the service can read (issue 24)
    app.register_blueprint(sync.bp)  # folder sync (issue 24)
    install_extensions(app, settings)  # request ids, metrics, API keys, OpenAPI, the web page
    return app
