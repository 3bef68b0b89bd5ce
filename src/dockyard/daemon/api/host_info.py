"""`docker info`'s facts of the host: CPUs, memory, kernel, OS, as Docker reports them."""

from __future__ import annotations

import os
import platform
from typing import Any


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _operating_system() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def host_facts() -> dict[str, Any]:
    uname = os.uname()
    return {
        # Docker's NCPU is runtime.NumCPU: the CPUs this process may run on.
        "NCPU": len(os.sched_getaffinity(0)) or os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "KernelVersion": uname.release,
        "OperatingSystem": _operating_system(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "Driver": "overlay2",
        "LoggingDriver": "json-file",
        "CgroupVersion": "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
        "ServerVersion": _version(),
    }


def _version() -> str:
    from dockyard import __version__

    return __version__
