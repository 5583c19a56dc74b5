"""Build the Celery app from Settings, configured as a durable queue needs."""

from __future__ import annotations

from celery import Celery

from indexer.settings import Settings
from workers.observability import connect_publish_signals

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def make_celery(settings: Settings) -> Celery:
    """One Celery app for both sides: the API sends tasks by name, the worker runs them."""
    url = settings.redis_url or DEFAULT_REDIS_URL
    app = Celery("clipsearch", broker=url, backend=url, include=["workers.tasks"])
    app.conf.update(
        # A task is acknowledged only after it finished, and re-queued when its worker dies mid-task:
        # together with idempotent tasks this is what makes a SIGKILL safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_track_started=True,
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.task_visibility_timeout_s},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_default_queue="clipsearch",
    )
    # The request id of the API request (or task) that sends a task travels in its headers.
    connect_publish_signals()
    return app
