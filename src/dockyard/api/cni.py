"""The API the CNI plugin (dockyard-cni) speaks to: one route per CNI verb.

Filled in by the CNI work (issue 6); registered by api/routes.py.
"""

from __future__ import annotations

from typing import Any


def register(api: Any) -> None:
    """Add the CNI routes to the daemon's API (none yet)."""
    return None
