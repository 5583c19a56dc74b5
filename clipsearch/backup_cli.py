"""`clipsearch backup create | list | show ID | restore ID`: the operator's backups, through the running
service's /admin/backups (indexer/services/backup.py does the work)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any
from urllib.parse import quote

from clipsearch.client import ApiClient
from indexer.settings import Settings

POLL_S = 1.0
ENDED = {"completed", "failed", "interrupted"}
TARGET_HELP = "a directory or s3://bucket/prefix allowed by the service (default: its BACKUP_URL)"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    backup = subparsers.add_parser("backup", help="back up the whole service, list backups, restore one")
    sub = backup.add_subparsers(dest="backup_command", required=True)

    create = sub.add_parser("create", help="back up every collection, class set, classifier and blob")
    create.add_argument("--to", help=TARGET_HELP)
    create.set_defaults(func=cmd_create)

    ls = sub.add_parser("list", help="the backups in a target, newest first")
    ls.add_argument("--from", dest="source", help=TARGET_HELP)
    ls.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="one backup's manifest (JSON)")
    show.add_argument("backup_id")
    show.add_argument("--from", dest="source", help=TARGET_HELP)
    show.set_defaults(func=cmd_show)

    restore = sub.add_parser("restore", help="restore a backup into this (empty) service")
    restore.add_argument("backup_id")
    restore.add_argument("--from", dest="source", help=TARGET_HELP)
    restore.set_defaults(func=cmd_restore)

    for parser in (create, ls, show, restore):
        parser.add_argument("--url", help="the service (default: http://API_HOST:API_PORT)")
        if parser in (create, restore):
            parser.add_argument("--no-wait", action="store_true", help="start it and return at once")


def _api(settings: Settings, url: str | None) -> ApiClient:
    base = url or f"http://{settings.api_host}:{settings.api_port}"
    return ApiClient(base, next(iter(settings.api_keys), None))


def _from(source: str | None) -> dict[str, str]:
    return {"from": source} if source else {}


def _follow(api: ApiClient, path: str, params: dict[str, str]) -> dict[str, Any]:
    while True:
        body: dict[str, Any] = api.call("GET", path, params=params)
        if body["state"] in ENDED:
            return body
        time.sleep(POLL_S)


def _summary(manifest: dict[str, Any]) -> str:
    weaviate = manifest.get("weaviate") or {}
    objects = sum(c["objects"] for c in weaviate.get("classes", []))
    blobs = (manifest.get("blobs") or {}).get("files", 0)
    jobs = (manifest.get("redis") or {}).get("jobs", 0)
    return (
        f"{manifest['id']}  {manifest['state']:<11}  {manifest['created_at'][:19]}  "
        f"{len(manifest['collections'])} collections, {manifest['class_sets']} class sets, "
        f"{manifest['classifiers']} classifiers, {objects} Weaviate objects, {blobs} blobs, "
        f"{jobs} job records"
    )


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    api = _api(settings, args.url)
    manifest = api.call("POST", "/admin/backups", expect=(202,), json={"to": args.to} if args.to else {})
    print(f"backup {manifest['id']} started in {manifest['target']}")
    if args.no_wait:
        return 0
    manifest = _follow(api, f"/admin/backups/{quote(manifest['id'])}", _from(args.to))
    print(_summary(manifest))
    if manifest["state"] != "completed":
        print(f"error: {manifest.get('error')}", file=sys.stderr)
        return 1
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    body = _api(settings, args.url).call("GET", "/admin/backups", params=_from(args.source))
    for manifest in body["backups"]:
        print(_summary(manifest))
    if not body["backups"]:
        print("no backups")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    api = _api(settings, args.url)
    manifest = api.call("GET", f"/admin/backups/{quote(args.backup_id)}", params=_from(args.source))
    print(json.dumps(manifest, indent=2))
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    api = _api(settings, args.url)
    path = f"/admin/backups/{quote(args.backup_id)}/restore"
    api.call("POST", path, expect=(202,), json=_from(args.source))
    print(f"restoring backup {args.backup_id}")
    if args.no_wait:
        return 0
    status = _follow(api, path, {})
    restored = status["restored"]
    print(
        f"restore {status['state']}: {restored['weaviate_objects']} Weaviate objects, "
        f"{restored['blobs']} blobs, {restored['redis_keys']} Redis keys"
    )
    for name, counts in status.get("mismatches", {}).items():
        print(f"  {name}: {counts['restored']} objects restored, the manifest counted {counts['expected']}")
    if status["state"] != "completed":
        print(f"error: {status.get('error')}", file=sys.stderr)
        return 1
    return 0
