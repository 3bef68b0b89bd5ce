"""sysctl values of the current network namespace, through /proc/sys.

/proc/sys/net shows the namespace of the thread that opens the file, so the
daemon, which enters its host namespace before any thread starts, sees the
host's values.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dockyard.errors import KernelError
from dockyard.kernel import netns

PROC_SYS = Path("/proc/sys")


def _path(key: str) -> Path:
    # A key in the slashed form (interface_key) keeps the dots of an interface name.
    return PROC_SYS / (key if "/" in key else key.replace(".", "/"))


def read(key: str) -> str:
    path = _path(key)
    try:
        return path.read_text().strip()
    except OSError as e:
        raise KernelError(f"cannot read sysctl {key}: {e.strerror}") from e


def write(key: str, value: str) -> None:
    path = _path(key)
    try:
        if path.read_text().strip() == value:
            return
        path.write_text(value)
    except OSError as e:
        raise KernelError(f"cannot set sysctl {key}={value}: {e.strerror}") from e


def interface_key(ifname: str, leaf: str, family: str = "ipv4") -> str:
    # Interface names may hold dots, which the dotted form would split.
    return f"net/{family}/conf/{ifname}/{leaf}"


def ipv6_off(ifname: str) -> None:
    """No router advertisement and no IPv6 on ifname, in the current namespace.

    No dockyard network has IPv6 yet: an interface that took a router
    advertisement would get an address and a default route from whoever
    sent it (CVE-2020-13401). A kernel without IPv6 has nothing to turn off.
    """
    if not (PROC_SYS / "net" / "ipv6").is_dir():
        return
    write(interface_key(ifname, "accept_ra", "ipv6"), "0")
    write(interface_key(ifname, "disable_ipv6", "ipv6"), "1")


def ipv6_on(ifname: str) -> None:
    """IPv6 on ifname, in the current namespace, and still no router advertisement taken:
    the engine gives the address and the default route (CVE-2020-13401 stays closed).
    accept_ra goes first, so that no advertisement is taken in between."""
    write(interface_key(ifname, "accept_ra", "ipv6"), "0")
    write(interface_key(ifname, "disable_ipv6", "ipv6"), "0")


def local_port_range() -> tuple[int, int]:
    lo, hi = read("net.ipv4.ip_local_port_range").split()
    return int(lo), int(hi)


def write_in_netns(pin: str | Path, pairs: Iterable[tuple[str, str]]) -> None:
    """net.* values in the network namespace pinned at pin (a container's --sysctl)."""
    with netns.entered(pin):
        for key, value in pairs:
            path = _path(key)
            if not path.exists():
                raise KernelError(f"cannot set sysctl {key}={value}: no such key in a network namespace")
            try:
                path.write_text(value)
            except OSError as e:
                raise KernelError(f"cannot set sysctl {key}={value}: {e.strerror}") from e
