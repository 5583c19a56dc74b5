"""Keeping a collection in step with a server-side folder (POST /collections/<c>/sync)."""
