"""Backups of a whole stack and their restore (issue 25).

A backup is one directory (or S3 prefix) below a target, named by its id:

- ``weaviate/``: Weaviate's own backup of every class (its backup-filesystem or backup-s3 module): the
  images with their vectors, the user-collection registry, class sets and classifiers with their
  calibrations, and their reference vectors. All of those live in Weaviate, none in Redis.
- ``blobs/``: the blob store as it was (originals, thumbnails, uploaded class examples).
- ``redis.json``: the job records that had ended (reports and per-file errors; indexer/jobs/store.py). Running
  jobs, heartbeats and blob pins are not state worth restoring: a running job's chunks are in the broker.
- ``manifest.json``: what the backup covers, with counts and versions; written first as ``running`` and
  again when the backup ends.

`indexer.services.backup` runs them; routes and the CLI call only that service.
"""
