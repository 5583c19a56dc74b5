"""The worker's entry point: `celery -A workers.app worker`. Settings come from the environment."""

from __future__ import annotations

from indexer.settings import Settings
from workers.celery_factory import make_celery
from workers.heartbeat import install_heartbeat
from workers.observability import install_worker_observability

settings = Settings()
app = make_celery(settings)
# JSON logs, request ids restored per task, multiprocess metrics and their exporter.
install_worker_observability(app, settings)
# A heartbeat in Redis from ready to shutdown: /health reads it instead of pinging workers.
install_heartbeat(app, settings)
