"""Cut a decode process off the network before it reads any untrusted byte: a new, empty network
namespace (only a loopback interface, down), so that a decoder exploit cannot reach Redis, Weaviate,
the object store or the internet.

It must run while the process is still single-threaded (a user namespace cannot be entered by a process
with threads, and importing numpy starts some): indexer/media/pool_entry.py calls it before importing
anything else. Standard library only.

Unprivileged, it takes a user namespace too (CLONE_NEWUSER | CLONE_NEWNET: Linux's
kernel.unprivileged_userns_clone, on by default on Debian and most distributions); as root a network
namespace alone. Where neither is allowed (a container without the capability, another OS) the process
keeps the network and the pool says so once in its log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000


def drop_network() -> bool:
    """Enter an empty network namespace; whether it worked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False
    return any(libc.unshare(flags) == 0 for flags in (CLONE_NEWUSER | CLONE_NEWNET, CLONE_NEWNET))
