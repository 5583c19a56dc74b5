"""Every id in a URL path is checked at the edge, before a route or the core sees it.

A route parameter is any text without a slash (NUL bytes, newlines, colons included), and ids become
Redis keys (`clipsearch:job:<id>`: "<id>:items" would name another key), Weaviate filters and
uuid5 names. So each parameter name has one check, run after the API-key check:

- `job_id`: 32 lowercase hex characters, else 404 "unknown job" with the reason;
- `image_id`: a UUID, else 400 "malformed image id" (the canonical form is passed on);
- `name`: a collection, class-set or classifier name (1 to 64 letters, digits, '.', '_' or '-',
  starting with a letter or digit), else 400 "invalid ... name";
- `backup_id`: lower-case letters, digits, '-' and '_' (a Weaviate backup id), else 400;
- `filename` (the web page's assets): 404 for control characters, '..' or over 200 characters.

`unchecked_params` lists any route parameter without a check; a unit test keeps it empty.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, request

from indexer.backup.manifest import check_backup_id
from indexer.classify.store import Kind, validate_set_name
from indexer.errors import NotFound
from indexer.jobs.store import check_job_id
from indexer.store.collections import validate_name
from indexer.store.images import check_image_id


def _name(value: str) -> str:
    rule = request.url_rule.rule if request.url_rule else ""
    if rule.startswith("/class-sets/"):
        return validate_set_name(value, Kind.CLASS_SET)
    if rule.startswith("/classifiers/"):
        return validate_set_name(value, Kind.CLASSIFIER)
    return validate_name(value)


def _asset(value: str) -> str:
    """A file of the web page: the route serves only its own allow-list; refuse odd names early."""
    if len(value) > 200 or any(ord(ch) < 32 for ch in value) or ".." in value.split("/"):
        raise NotFound("no such file")
    return value


CHECKS: dict[str, Callable[[str], str]] = {
    "job_id": check_job_id,
    "image_id": check_image_id,
    "name": _name,
    "filename": _asset,
    "backup_id": check_backup_id,
}


def unchecked_params(app: Flask) -> list[str]:
    """Route parameters that have no check here (a new one must be added to CHECKS)."""
    return sorted(
        f"{rule.rule} <{arg}>"
        for rule in app.url_map.iter_rules()
        for arg in rule.arguments
        if arg not in CHECKS and not rule.rule.startswith("/static/")
    )


def install_path_checks(app: Flask) -> None:
    @app.before_request
    def _check_path_ids() -> None:
        args = request.view_args
        if not args:
            return
        for key, value in list(args.items()):
            check = CHECKS.get(key)
            if check is not None and isinstance(value, str):
                args[key] = check(value)
