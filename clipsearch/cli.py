"""The `clipsearch` console script."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import quote

from clipsearch.client import ApiClient, image_files
from clipsearch.index_dir import start_index
from clipsearch.stack import LocalStack
from clipsearch.supervisor import RestartPolicy, Supervisor, stack_parts
from indexer.errors import ClipsearchError, ModelUnavailable
from indexer.settings import Settings
from indexer.supervision import remove_status, status_path
from search_api.guard import check_bind

DEMO_DIR = Path(__file__).parent / "demo"
DEMO_COLLECTION = "demo"

SUPERVISOR_ROUND_S = 0.5  # how often `up` looks at its parts
ALLOW_OPEN_HELP = (
    "serve on a non-loopback address without API_KEYS (ALLOW_OPEN_BIND=true): only behind a trusted network"
)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def ensure_model(settings: Settings, allow_download: bool) -> Settings:
    """The configured model if cached (or pulled now), else the bundled tiny test model, said plainly."""
    from indexer.services.models import TINY_MODEL_ID, ModelsService

    models = ModelsService(settings)
    try:
        models.resolve(allow_download=False)
        return settings
    except ModelUnavailable:
        if not allow_download:
            raise
    print(f"model {settings.model_id} is not cached: downloading it from the hub ...", flush=True)
    try:
        models.resolve(allow_download=True)
        return settings
    except ModelUnavailable as exc:
        print(
            f"cannot download {settings.model_id}: {exc.message}\n"
            f"RUNNING ON THE BUNDLED TINY TEST MODEL ({TINY_MODEL_ID}): search results are NOT semantic.\n"
            f"When online, run `clipsearch models pull {settings.model_id}` and restart.",
            flush=True,
        )
        os.environ["MODEL_ID"] = TINY_MODEL_ID
        return settings.model_copy(update={"model_id": TINY_MODEL_ID})


def index_demo(api: ApiClient) -> str:
    """Index the bundled demo photos into the `demo` collection; return a search URL."""
    api.ensure_collection(DEMO_COLLECTION)
    paths = list(image_files(DEMO_DIR))
    jobs, _ = api.upload_paths(DEMO_COLLECTION, DEMO_DIR, paths, tags="demo")
    reports = api.follow(jobs, len(paths), show=False)
    done = sum(r["done"] for r in reports) + sum(r["duplicates"] for r in reports)
    print(f"demo collection {DEMO_COLLECTION!r}: {done} images indexed", flush=True)
    return f"{api.base}/?collection={DEMO_COLLECTION}&q={quote('a photo of a cat')}"


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Start everything in the foreground, restart what dies (clipsearch/supervisor.py), and stop it all
    on Ctrl-C or SIGTERM."""
    if args.port:
        settings = settings.model_copy(update={"api_port": args.port})
    if args.allow_open:
        settings = settings.model_copy(update={"allow_open_bind": True})
    check_bind(settings.api_host, settings)  # before anything starts or downloads
    if not settings.model_dir:
        settings = ensure_model(settings, allow_download=not args.offline)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Ctrl-C (or kill -INT) stops the stack even when SIGINT came in ignored: a shell without job control
    # starts background commands that way, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, _raise_interrupt)
    stack = LocalStack(settings, object_store=args.object_store, weaviate_nodes=args.weaviate_nodes)
    status_file = status_path(settings.data_dir)
    try:
        print("starting redis, weaviate, a worker and the API ...", flush=True)
        stack.start()
        stack.wait_healthy()
        print(f"clipsearch is up: {stack.api_url}  (health: {stack.api_url}/health)", flush=True)
        supervisor = Supervisor(stack_parts(stack), RestartPolicy.from_settings(settings), status_file)
        supervisor.publish()
        if args.demo:
            url = index_demo(ApiClient(stack.api_url, next(iter(settings.api_keys), None)))
            print(f"search the demo: {url}", flush=True)
            print(
                f"  or: curl -s {stack.api_url}/search/text -H 'Content-Type: application/json' "
                f'-d \'{{"collection": "{DEMO_COLLECTION}", "query": "a photo of a cat"}}\'',
                flush=True,
            )
        print(f"logs: {stack.log_dir}  -- press Ctrl-C to stop", flush=True)
        while True:  # only Ctrl-C or SIGTERM (KeyboardInterrupt) ends this
            supervisor.tick(time.monotonic())
            supervisor.publish()
            time.sleep(SUPERVISOR_ROUND_S)
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    except ClipsearchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        remove_status(status_file)
        stack.stop()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the API alone under gunicorn (for deployments; point it at WEAVIATE_URL and REDIS_URL)."""
    host = args.host or settings.api_host
    if args.allow_open:
        settings = settings.model_copy(update={"allow_open_bind": True})
    check_bind(host, settings)
    # The gunicorn entry checks again (search_api.wsgi), and answers for this host name.
    os.environ["ALLOW_OPEN_BIND"] = "true" if settings.allow_open_bind else "false"
    os.environ["API_HOST"] = host
    address = f"[{host}]" if ":" in host and not host.startswith("[") else host
    bind = f"{address}:{args.port or settings.api_port}"
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several gunicorn processes: metrics are summed across them only in multiprocess mode, which
        # needs an empty directory of its own.
        metrics_dir = settings.data_dir / "metrics" / f"api-{os.getpid()}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    argv = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(args.workers)]
    argv += ["--threads", "8", "--timeout", "300", "search_api.wsgi:app"]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run one Celery worker alone (for deployments; scale by running more)."""
    concurrency = args.concurrency or settings.worker_concurrency
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--loglevel=INFO"]
    argv += [f"--concurrency={concurrency}", "--queues", "clipsearch"]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


def _api(settings: Settings, url: str | None) -> ApiClient:
    return ApiClient(
        url or f"http://{settings.api_host}:{settings.api_port}", next(iter(settings.api_keys), None)
    )


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    """Index a directory through a running service and follow the job with a progress bar. When the
    service reads the same folder (its own machine or disk, under FOLDER_ROOTS), the folder is registered
    and nothing is uploaded; otherwise, or with --upload, the files are uploaded."""
    root = Path(args.directory)
    if not root.is_dir():
        print(f"error: {root} is not a directory", file=sys.stderr)
        return 2
    api = _api(settings, args.url)
    api.ensure_collection(args.collection)
    paths = list(image_files(root))
    started = start_index(api, args.collection, root, paths, tags=args.tags or "", upload=args.upload)
    if started.registered is not None:
        print(f"the service reads {started.registered} itself: registered, nothing uploaded", flush=True)
    elif not args.upload:
        print(f"uploading: the service does not read {root} itself (FOLDER_ROOTS)", flush=True)
    reports = api.follow(started.jobs, started.accepted)
    errors = started.refused + [e for r in reports for e in r["errors"]]
    indexed = sum(r["done"] for r in reports)
    duplicates = sum(r["duplicates"] for r in reports)
    print(f"indexed {indexed}, duplicates {duplicates}, failed {len(errors)}")
    for error in errors:
        print(f"  failed: {error['file']}: {error['reason']}")
    return 0 if not errors else 1


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    api = _api(settings, args.url)
    body = api.call(
        "POST", "/search/text", json={"collection": args.collection, "query": args.text, "limit": args.limit}
    )
    for rank, hit in enumerate(body["results"], 1):
        print(f"{rank:3d}. {hit['score']:.4f}  {hit['filename']}  {api.base}{hit['thumbnail_url']}")
    if not body["results"]:
        print("no results")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipsearch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Weaviate, Redis, a worker and the API in the foreground")
    up.add_argument("--port", type=int, help="API port (default: API_PORT or 8000)")
    up.add_argument("--demo", action="store_true", help="index the bundled demo photos into `demo`")
    up.add_argument("--offline", action="store_true", help="never download a model")
    up.add_argument("--allow-open", action="store_true", help=ALLOW_OPEN_HELP)
    up.add_argument(
        "--object-store",
        action="store_true",
        help="also start a loopback S3-compatible store (rclone serve s3) for staging and blobs",
    )
    up.add_argument(
        "--weaviate-nodes", type=int, default=1, help="start a Weaviate cluster of this many loopback nodes"
    )
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run the HTTP API alone")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="gunicorn processes")
    serve.add_argument("--allow-open", action="store_true", help=ALLOW_OPEN_HELP)
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run one Celery worker alone")
    worker.add_argument("--concurrency", type=int)
    worker.set_defaults(func=cmd_worker)
    index = sub.add_parser("index", help="index a directory through the running service")
    index.add_argument("directory", help="the folder of images, walked with its sub-folders")
    index.add_argument("--collection", required=True, help="the collection (created when missing)")
    index.add_argument("--tags", help="comma-separated tags for every image")
    index.add_argument("--url", help="the service (default: http://API_HOST:API_PORT)")
    index.add_argument(
        "--upload",
        action="store_true",
        help="upload the files even when the service could read the folder itself (FOLDER_ROOTS)",
    )
    index.set_defaults(func=cmd_index)

    search = sub.add_parser("search", help="search a collection by text")
    search.add_argument("text", help="what to look for, in words")
    search.add_argument("--collection", required=True, help="the collection to search")
    search.add_argument("--limit", type=int, default=10, help="how many results (10)")
    search.add_argument("--url", help="the service (default: http://API_HOST:API_PORT)")
    search.set_defaults(func=cmd_search)

    from clipsearch.backup_cli import register as register_backup
    from clipsearch.models_cli import register
    from clipsearch.sync_cli import register as register_sync

    register(sub)
    register_backup(sub)
    register_sync(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        code: int = args.func(args, settings)
    except ClipsearchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
