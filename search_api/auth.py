"""API keys: when settings.api_keys is set, every request needs `Authorization: Bearer <key>`.

Open without a key: `/health` and `/metrics` (probes and scrapers), and the static shell of the web
page and the API docs (`/`, `/docs`, `/web/...`). A browser cannot attach a header to a page
navigation, and those files hold no data: the page asks for the key, keeps it in localStorage and sends
it with every API call it makes. Everything else (the whole JSON API, thumbnails and files,
`/openapi.json`) answers 401 without a valid key.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request

from indexer.errors import Unauthorized

# Endpoint names (blueprint.view) that never need a key.
PUBLIC_ENDPOINTS = frozenset({"health.health", "metrics.metrics", "web.index", "web.docs", "web.asset"})


def key_matches(presented: str, keys: list[str]) -> bool:
    """Constant-time comparison against every configured key (no early exit on a match)."""
    given = presented.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def install_auth(app: Flask, keys: list[str]) -> None:
    """Register the check on `app`; a no-op when no keys are configured."""
    if not keys:
        return
    keys = list(keys)

    @app.before_request
    def _require_key() -> None:
        if request.endpoint in PUBLIC_ENDPOINTS:
            return
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        if not key_matches(token, keys):
            raise Unauthorized("the API key is not valid")

    @app.after_request
    def _challenge(response: Response) -> Response:
        if response.status_code == 401:
            response.headers.setdefault("WWW-Authenticate", 'Bearer realm="clipsearch"')
        return response
