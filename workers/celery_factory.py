"""Build the Celery app from Settings, configured as a durable queue needs."""

from __future__ import annotations

from celery import Celery

from indexer.services.backends import DEFAULT_REDIS_URL
from indexer.services.queue import QUEUE, visibility_timeout_s
from indexer.settings import Settings
from workers.observability import connect_publish_signals


def make_celery(settings: Settings) -> Celery:
    """One Celery app for both sides: the API sends tasks by name, the worker runs them."""
    url = settings.redis_url or DEFAULT_REDIS_URL
    # No result backend: nothing reads task results (progress lives in the job records,
    # indexer/jobs/store.py).
    app = Celery("clipsearch", broker=url, include=["workers.tasks"])
    app.conf.update(
        # A task is acknowledged only after it finished, and re-queued when its worker dies mid-task:
        # together with idempotent tasks this is what makes a SIGKILL safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # Above the hard time limit of the largest ingest task (indexer/services/queue.py).
        broker_transport_options={"visibility_timeout": visibility_timeout_s(settings)},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_default_queue=QUEUE,
    )
    # The request id of the API request (or task) that sends a task travels in its headers.
    connect_publish_signals()
    return app
