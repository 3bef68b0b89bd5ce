"""Where a dockyard root keeps its files, by name: stdlib `os` only.

The thin clients need the socket's path before anything else, and every
import is paid on every command, so this module imports nothing heavier
than `os` (settings.Paths gives the daemon the same names as Path objects).
"""

from __future__ import annotations

import os

DEFAULT_ROOT = "/var/lib/dockyard"
ROOT_ENV = "DOCKYARD_ROOT"
SOCKET = "dockyard.sock"
DAEMON_PID = "dockyardd.pid"
DAEMON_LOG = "daemon.log"


def root_dir(explicit: str | None = None) -> str:
    """--root, else $DOCKYARD_ROOT, else /var/lib/dockyard."""
    return os.path.abspath(explicit or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
