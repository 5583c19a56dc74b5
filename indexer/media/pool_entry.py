"""The decode process's entry point: ``python -m indexer.media.pool_entry <max_cpu_s> <max_memory_mb>``.
It leaves the network first, while the process has one thread (indexer/media/sandbox.py), then imports
the decoders and serves (indexer/media/pool_worker.py)."""

from __future__ import annotations

import sys

from indexer.media.sandbox import drop_network

if __name__ == "__main__":
    offline = drop_network()
    from indexer.media.pool_worker import main

    sys.exit(main(sys.argv, offline=offline))
