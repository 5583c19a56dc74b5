"""Task bodies: a few lines each over indexer."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="clipsearch.ping")
def ping() -> str:
    """A round trip through Redis and a real worker; /health and the tests use it."""
    return "pong"
