"""The `clipsearch` console script."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

from clipsearch.stack import LocalStack
from indexer.errors import ClipsearchError
from indexer.settings import Settings

MAX_WORKER_RESTARTS = 5


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Start everything in the foreground and stop it all on Ctrl-C or SIGTERM."""
    if args.port:
        settings = settings.model_copy(update={"api_port": args.port})
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack = LocalStack(settings)
    restarts = 0
    try:
        print("starting redis, weaviate, a worker and the API ...", flush=True)
        stack.start()
        stack.wait_healthy()
        print(f"clipsearch is up: {stack.api_url}  (health: {stack.api_url}/health)", flush=True)
        print(f"logs: {stack.log_dir}  -- press Ctrl-C to stop", flush=True)
        while True:
            time.sleep(1)
            for proc in stack.processes():
                if proc.alive():
                    continue
                if proc in stack.workers and restarts < MAX_WORKER_RESTARTS:
                    restarts += 1
                    print(f"{proc.name} died; starting a new worker ({restarts}/{MAX_WORKER_RESTARTS})")
                    stack.workers.remove(proc)
                    stack.start_worker()
                    break
                print(f"{proc.name} stopped unexpectedly; see {proc.log_path}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    except ClipsearchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the API alone under gunicorn (for deployments; point it at WEAVIATE_URL and REDIS_URL)."""
    bind = f"{args.host or settings.api_host}:{args.port or settings.api_port}"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipsearch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Weaviate, Redis, a worker and the API in the foreground")
    up.add_argument("--port", type=int, help="API port (default: API_PORT or 8000)")
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run the HTTP API alone")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="gunicorn processes")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run one Celery worker alone")
    worker.add_argument("--concurrency", type=int)
    worker.set_defaults(func=cmd_worker)
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
