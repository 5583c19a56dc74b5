"""Connect to Weaviate from WEAVIATE_URL (the managed local server sets it for its children)."""

from __future__ import annotations

from urllib.parse import urlparse

import weaviate
from weaviate.classes.init import AdditionalConfig, Auth, Timeout

from indexer.errors import ServiceUnavailable
from indexer.settings import Settings

DEFAULT_WEAVIATE_URL = "http://127.0.0.1:8080"


def connect(settings: Settings) -> weaviate.WeaviateClient:
    """Open a v4 client (HTTP plus gRPC). Raises ServiceUnavailable with the address when it is down."""
    url = urlparse(settings.weaviate_url or DEFAULT_WEAVIATE_URL)
    secure = url.scheme == "https"
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if secure else 80)
    auth = Auth.api_key(settings.weaviate_api_key) if settings.weaviate_api_key else None
    try:
        return weaviate.connect_to_custom(
            http_host=host,
            http_port=port,
            http_secure=secure,
            grpc_host=host,
            grpc_port=settings.weaviate_grpc_port,
            grpc_secure=secure,
            auth_credentials=auth,
            skip_init_checks=True,
            additional_config=AdditionalConfig(timeout=Timeout(init=5, query=60, insert=120)),
        )
    except Exception as exc:  # the client raises several types for "not there"
        raise ServiceUnavailable(f"cannot reach Weaviate at {url.geturl()}: {exc}") from exc


def weaviate_status(client: weaviate.WeaviateClient) -> dict[str, object]:
    """Readiness and server version, for /health."""
    try:
        ready = bool(client.is_ready())
        version = client.get_meta().get("version") if ready else None
    except Exception as exc:
        return {"ready": False, "error": str(exc)}
    return {"ready": ready, "version": version}
