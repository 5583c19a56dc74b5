"""Job records in Redis: outcomes, progress, open uploads, and the workers' heartbeats."""
