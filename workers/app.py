"""The worker's entry point: `celery -A workers.app worker`. Settings come from the environment."""

from __future__ import annotations

from indexer.settings import Settings
from workers.celery_factory import make_celery

app = make_celery(Settings())
