"""docker top: the processes of a running container, as the host's ps shows them."""

from __future__ import annotations

from typing import Any

from dockyard.errors import Conflict
from dockyard.kernel import procs


def top(engine: Any, ref: str, ps_args: str) -> tuple[list[str], list[list[str]]]:
    """(Titles, Processes): `ps ps_args` (Docker's default -ef) kept to the container's PID namespace."""
    c = engine.get(ref)
    if not c.running:
        raise Conflict(f"container {c.name} is not running")
    return procs.ps_table((ps_args or "-ef").split(), procs.pid_namespace_members(c.pid))
