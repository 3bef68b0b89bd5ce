"""Mechanism: the only place that talks to the kernel.

netlink.py (pyroute2), nft.py (libnftables), netns.py (namespaces and
mounts through libc), sysctl.py, holds.py (host-port holds), spawn.py and
shim_client.py (container processes), rootfs.py (a container's own root),
caps.py (its capabilities and user), users.py (its passwd and group
lookups), cgroups.py (its pids cgroup), xtables.py (iptables-legacy's
FORWARD chain, through its binary), files.py (files under $ROOT, never
through a link). `Kernel` bundles the handles that the
engine injects into drivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.kernel.holds import PortHolds
    from dockyard.kernel.netlink import Netlink
    from dockyard.kernel.nft import Nft
    from dockyard.kernel.xtables import LegacyForward


@dataclass
class Kernel:
    netlink: Netlink
    nft: Nft
    holds: PortHolds
    # None where nothing looks at iptables-legacy (unit tests' fakes).
    legacy: LegacyForward | None = None
