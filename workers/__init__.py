"""Celery layer: turns queue messages into calls on indexer. Task bodies stay a few lines."""
