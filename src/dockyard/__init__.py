"""dockyard: a container network engine for Linux with Docker's four network drivers.

The public Python API is `dockyard.clients.api.Client` (a thin client of the
daemon) and, for programs that embed the engine, `Engine`, the model types
and the errors. The heavy parts load lazily: importing `dockyard` must stay
as cheap as the thin clients need.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing would cost every client command
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = ["Client", "DockyardError", "Engine", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from dockyard.clients.api import Client

        return Client
    if name == "Engine":
        from dockyard.engine import Engine

        return Engine
    if name == "DockyardError":
        from dockyard.errors import DockyardError

        return DockyardError
    raise AttributeError(name)
