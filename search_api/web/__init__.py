"""The web page at `/` and the API docs at `/docs`: static files, served from this directory.

Everything the page needs is here (no CDN): index.html, style.css and the ES modules that main.js
imports for the search page, docs.html and docs.js for a small renderer of /openapi.json. Every `.js`
file goes out as JavaScript whatever the host's MIME table says: browsers refuse a module script
served with any other type.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

WEB_DIR = Path(__file__).parent
ASSETS = frozenset(p.name for p in WEB_DIR.iterdir() if p.suffix in {".js", ".css"})
JAVASCRIPT = "text/javascript"  # werkzeug adds "; charset=utf-8"

bp = Blueprint("web", __name__)


def _send(name: str) -> Response:
    mimetype = JAVASCRIPT if name.endswith(".js") else None
    response = send_from_directory(WEB_DIR, name, max_age=0, mimetype=mimetype)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return response


@bp.get("/")
def index() -> Response:
    """The search page (HTML)."""
    return _send("index.html")


@bp.get("/docs")
def docs() -> Response:
    """A page that renders /openapi.json (HTML)."""
    return _send("docs.html")


@bp.get("/web/<path:filename>")
def asset(filename: str) -> Response:
    """A static file of the page."""
    if filename not in ASSETS:
        from indexer.errors import NotFound

        raise NotFound(f"no such file: {filename}")
    return _send(filename)
