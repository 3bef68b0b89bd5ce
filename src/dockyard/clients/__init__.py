"""The clients: the `dockyard` CLI, the API client and dockyard-cni.

Each invocation pays every import, so everything here imports only the
standard library and other client modules (tests/unit/test_layers.py).
"""

from __future__ import annotations

import os
import sys


def leave(code: int) -> None:
    """Exit with code, without the interpreter's finalization when stdio flushes.

    Finalization tears down every module and object (~3 ms of each command on
    these machines) and does nothing a client needs: the clients start no
    thread and register no atexit handler, and the kernel closes their
    sockets. A flush that fails leaves it to sys.exit, which reports it as
    the interpreter always has.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code & 0xFF)
