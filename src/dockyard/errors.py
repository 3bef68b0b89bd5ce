"""The one exception tree of dockyard.

Errors are chosen by behaviour, not by origin: the CLI maps a class to an
exit code (125, 126, 127) and prints its message, never a traceback. This
module is a leaf: it imports nothing from dockyard, so the thin clients can
use it.
"""

from __future__ import annotations


class DockyardError(Exception):
    """Something a user can understand and act on. Exit status 125."""

    exit_code = 125
    # The HTTP status the API answers with; the client maps it back.
    http_status = 500
    kind = "DockyardError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(DockyardError):
    """Bad input: a malformed flag, an address outside a subnet, ..."""

    http_status = 400
    kind = "InvalidArgument"


class NotFound(DockyardError):
    """A container, network or exec instance that does not exist."""

    http_status = 404
    kind = "NotFound"


class Conflict(DockyardError):
    """A name in use, a host port already allocated, a busy network, ..."""

    http_status = 409
    kind = "Conflict"


class KernelError(DockyardError):
    """The kernel refused a change; the message says what and on which object."""

    http_status = 500
    kind = "KernelError"


class DaemonUnavailable(DockyardError):
    """The daemon cannot be reached or started."""

    http_status = 503
    kind = "DaemonUnavailable"


class ClusterUnavailable(DockyardError):
    """The cluster store (etcd) cannot be reached, or this host's place in it is lost.

    Running containers keep working; new work that needs the store is refused.
    """

    http_status = 503
    kind = "ClusterUnavailable"


class CommandNotRunnable(DockyardError):
    """The container's command exists but cannot be executed."""

    exit_code = 126
    http_status = 400
    kind = "CommandNotRunnable"


class CommandNotFound(DockyardError):
    """The container's command is not found."""

    exit_code = 127
    http_status = 404
    kind = "CommandNotFound"


ERROR_KINDS: dict[str, type[DockyardError]] = {
    cls.kind: cls
    for cls in (
        DockyardError,
        InvalidArgument,
        NotFound,
        Conflict,
        KernelError,
        DaemonUnavailable,
        ClusterUnavailable,
        CommandNotRunnable,
        CommandNotFound,
    )
}


def from_wire(kind: str, message: str) -> DockyardError:
    """Rebuild an error sent by the daemon (the API carries its kind)."""
    return ERROR_KINDS.get(kind, DockyardError)(message)
