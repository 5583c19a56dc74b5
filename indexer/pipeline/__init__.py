"""The staged chunk runner and the use cases that run on it (ingest, re-embed; labelling beside them)."""
