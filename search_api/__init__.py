"""Flask layer: HTTP in, calls on indexer, JSON out. No business logic in routes."""
