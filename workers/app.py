"""The worker's entry point: `celery -A workers.app worker`. Settings come from the environment."""

from __future__ import annotations

from indexer.settings import Settings
from workers.celery_factory import make_celery
from workers.heartbeat import install_heartbeat
from workers.observability import install_worker_observability
from workers.sweeper import install_sweeper

settings = Settings()
app = make_celery(settings)
# JSON logs, request ids restored per task, multiprocess metrics and their exporter.
install_worker_observability(app, settings)
# A heartbeat in Redis from ready to shutdown: /health reads it instead of pinging workers.
install_heartbeat(app, settings)
# The periodic duties, one worker doing each (a Redis lock): lost chunks are found and run again (no job
# hangs), and idle open upload jobs expire with their staged files (OPEN_JOB_IDLE_S).
install_sweeper(app, settings)
