"""nftables through libnftables, in process: one JSON batch is one transaction.

rules.py decides what the commands are; this module applies them, reads the
table back, and turns libnftables failures into KernelError with one line
of context.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from dockyard.errors import KernelError
from dockyard.kernel import nftnl

try:
    import nftables
except ImportError:  # pragma: no cover - reported when used
    nftables = None


_ENCODER = json.JSONEncoder(check_circular=False)


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "unknown error"


class Nft:
    """One libnftables context, used under a lock (the context is not thread-safe)."""

    def __init__(self) -> None:
        if nftables is None:
            raise KernelError(
                "libnftables is not available: install the nftables package "
                "(apt-get install nftables) and the pip-nftables binding"
            )
        try:
            self._ctx = nftables.Nftables()
        except OSError as e:
            raise KernelError(
                f"cannot load libnftables ({e}): install the nftables package (apt-get install nftables)"
            ) from e
        self._ctx.set_json_output(True)
        self._ctx.set_handle_output(False)
        self._lock = threading.Lock()
        try:
            self._elements = nftnl.ElementSocket()
        except OSError as e:
            raise KernelError(f"cannot open an nf_tables netlink socket: {e.strerror or e}") from e

    def change_elements(self, add: bool, changes: list[nftnl.SetChange], comment: str = "") -> None:
        """Add or delete elements of sets and maps in one batch, straight over
        netlink (nftnl.py): a port range's thousand elements without libnftables."""
        self._elements.change(add, changes, comment)

    def apply(self, commands: list[dict[str, Any]], what: str) -> None:
        """Apply commands as one atomic batch."""
        if not commands:
            return
        # What json_cmd does (the context's output is JSON already), without
        # its circularity check: a batch of 1,000 elements is some 5,000
        # small objects, and the check was a third of the encoding's time.
        text = _ENCODER.encode({"nftables": commands})
        with self._lock:
            rc, _out, err = self._ctx.cmd(text)
        if rc != 0:
            raise KernelError(f"nftables refused to {what}: {_first_error_line(err)}")

    def apply_text(self, text: str, what: str) -> None:
        """Apply a block of nft syntax as one atomic batch (see rules.TABLE_TEXT)."""
        with self._lock:
            rc, _out, err = self._ctx.cmd(text)
        if rc != 0:
            raise KernelError(f"nftables refused to {what}: {_first_error_line(err)}")

    def list_table(self, family: str, name: str) -> list[dict[str, Any]] | None:
        """The table as `nft -j list table` prints it, or None when it does not exist."""
        with self._lock:
            rc, out, err = self._ctx.cmd(f"list table {family} {name}")
        if rc != 0:
            if "No such file or directory" in err or "does not exist" in err:
                return None
            raise KernelError(f"cannot list nftables table {family} {name}: {_first_error_line(err)}")
        data = json.loads(out) if out else {"nftables": []}
        return list(data.get("nftables", []))

    def list_chain(self, family: str, table: str, chain: str) -> list[dict[str, Any]] | None:
        """A chain and its rules (with handles), or None when it does not exist."""
        with self._lock:
            self._ctx.set_handle_output(True)
            try:
                rc, out, _err = self._ctx.cmd(f"list chain {family} {table} {chain}")
            finally:
                self._ctx.set_handle_output(False)
        if rc != 0:
            return None
        data = json.loads(out) if out else {"nftables": []}
        return list(data.get("nftables", []))

    def table_exists(self, family: str, name: str) -> bool:
        return self.list_table(family, name) is not None
