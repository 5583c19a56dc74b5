"""The encoder's threads: the preparation pool (decode and preprocess beside inference), the inference
lanes (batches in the image session at once), and how many of each."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2

_limits_applied = False
_limits_lock = threading.Lock()


def limit_helper_threads() -> None:
    """Make numpy's BLAS and OpenCV single-threaded, once per process.

    Preprocessing runs its small matrix products and resizes beside ONNX Runtime, which already uses the
    cores. Multi-threaded OpenBLAS workers spin while waiting and stall ORT's parallel loops: measured on
    2 cores, the full image path fell from 0.85x to 0.2x of the raw session throughput. Parallelism comes
    from the encoder's own prep threads instead.
    """
    global _limits_applied
    with _limits_lock:
        if _limits_applied:
            return
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        cv2.setNumThreads(1)
        _limits_applied = True


def lane_count(lanes: int, *, threads: int, on_gpu: bool) -> int:
    """Batches in the image session at once, sharing its threads; ``lanes`` 0 means auto: two on a CPU
    with at least two threads, else one."""
    return max(1, lanes if lanes > 0 else (1 if on_gpu or threads < 2 else 2))


def default_prep_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class EncoderPools:
    """The preparation pool and the lane pool, started on first use and shut down by ``close``."""

    def __init__(self, prep_workers: int, lanes: int) -> None:
        self.prep_workers = prep_workers
        self.lanes = lanes
        self._prep: ThreadPoolExecutor | None = None
        self._lanes: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def prep(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._prep is None:
                limit_helper_threads()
                self._prep = ThreadPoolExecutor(self.prep_workers, thread_name_prefix="clip-prep")
            return self._prep

    def lane_pool(self) -> ThreadPoolExecutor | None:
        """The threads that run batches through the image session at once; None with a single lane (the
        caller's thread runs them)."""
        if self.lanes == 1:
            return None
        with self._lock:
            if self._lanes is None:
                self._lanes = ThreadPoolExecutor(self.lanes, thread_name_prefix="clip-lane")
            return self._lanes

    def close(self) -> None:
        with self._lock:
            for pool in (self._prep, self._lanes):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._prep = self._lanes = None
