"""The worker's entry module must not load prometheus_client: workers/observability.py points
PROMETHEUS_MULTIPROC_DIR at the worker's directory only when Celery imports the task modules, and
counters made before that live in one process, never summed (test_observability.py saw 0 indexed)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_worker_app_does_not_load_prometheus_client() -> None:
    code = "import sys, workers.app; print('prometheus_client' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
