"""sysctl values of the current network namespace, through /proc/sys.

/proc/sys/net shows the namespace of the thread that opens the file, so the
daemon, which enters its host namespace before any thread starts, sees the
host's values.
"""

from __future__ import annotations

from pathlib import Path

from dockyard.errors import KernelError

PROC_SYS = Path("/proc/sys")


def read(key: str) -> str:
    path = PROC_SYS / key.replace(".", "/")
    try:
        return path.read_text().strip()
    except OSError as e:
        raise KernelError(f"cannot read sysctl {key}: {e.strerror}") from e


def write(key: str, value: str) -> None:
    path = PROC_SYS / key.replace(".", "/")
    try:
        if path.read_text().strip() == value:
            return
        path.write_text(value)
    except OSError as e:
        raise KernelError(f"cannot set sysctl {key}={value}: {e.strerror}") from e


def interface_key(ifname: str, leaf: str) -> str:
    # Interface names may hold dots, which the dotted form would split.
    return f"net/ipv4/conf/{ifname}/{leaf}"


def local_port_range() -> tuple[int, int]:
    lo, hi = read("net.ipv4.ip_local_port_range").split()
    return int(lo), int(hi)
