"""iptables-legacy's FORWARD chain (x_tables), which nftables cannot see.

A host whose firewall still uses the legacy backend (an older Docker, or
`update-alternatives --set iptables iptables-legacy`) with its FORWARD
policy DROP drops our bridges' traffic after nftables accepted it. This
reads and changes that chain through the `iptables-legacy` binary, with an
argument list (no shell). It only ever looks where the legacy filter table
already exists in this network namespace: running the binary would create
it otherwise. What to add or remove is decided by rules/forward.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dockyard.errors import KernelError

# The legacy tables of the calling thread's network namespace.
TABLE_NAMES = Path("/proc/thread-self/net/ip_tables_names")
TIMEOUT = 10


class LegacyForward:
    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or shutil.which("iptables-legacy")

    def present(self) -> bool:
        """The legacy filter table exists here (and the binary to read it)."""
        if not self.binary:
            return False
        try:
            return "filter" in TABLE_NAMES.read_text().split()
        except OSError:
            return False

    def _run(self, args: list[str], what: str) -> str:
        assert self.binary is not None
        try:
            r = subprocess.run(
                [self.binary, "-w", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise KernelError(f"cannot {what}: {e}") from None
        if r.returncode != 0:
            raise KernelError(f"cannot {what}: {r.stderr.strip() or f'exit status {r.returncode}'}")
        return r.stdout

    def listing(self) -> list[str] | None:
        """`iptables-legacy -S FORWARD`, line by line; None when there is no legacy filter table."""
        if not self.present():
            return None
        return self._run(["-S", "FORWARD"], "list iptables-legacy FORWARD").splitlines()

    def insert(self, spec: list[str]) -> None:
        self._run(["-I", "FORWARD", *spec], "add a rule to iptables-legacy FORWARD")

    def delete(self, spec: list[str]) -> None:
        self._run(["-D", "FORWARD", *spec], "remove a rule from iptables-legacy FORWARD")
