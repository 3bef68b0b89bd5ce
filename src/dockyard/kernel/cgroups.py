"""A pids cgroup per container, under a parent directory owned by one $ROOT.

The pids controller is found where the host mounts it: cgroup v1's own
hierarchy (/sys/fs/cgroup/pids on these machines) or the v2 hierarchy when
pids is one of its controllers. The parent is `dockyard-<12 hex of the
root's path>` at the top of that hierarchy (Docker's cgroupfs driver uses
`docker`), so two roots never touch each other's; each container started
with --pids-limit gets a directory named by its id, with pids.max set to the
limit, and its processes (execs too) join it before they exec. The directory
goes when the container's process has ended, and gc removes what no running
container owns. Where no pids controller is mounted, --pids-limit is refused.

A container without a limit gets no cgroup: nothing would read it, and each
join costs a writer's turn on the kernel's global cgroup_threadgroup_rwsem,
whose first writer after a quiet moment waits for an RCU grace period (8-16 ms
on these machines, the largest step of a start; back to back, 0.3 ms).
CLONE_INTO_CGROUP, which avoids the migration, exists for cgroup v2 only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path

from dockyard import digests
from dockyard.errors import KernelError

PROCS = "cgroup.procs"


def pids_hierarchy() -> Path | None:
    """Where the pids controller is mounted in this mount namespace, v1 first."""
    v2: list[Path] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup" and "pids" in options:
                return Path(fields[4])
            if fstype == "cgroup2":
                v2.append(Path(fields[4]))
    for mount in v2:
        with contextlib.suppress(OSError):
            if "pids" in (mount / "cgroup.controllers").read_text().split():
                return mount
    return None


def parent_name(root: str) -> str:
    return "dockyard-" + digests.sha256(root.encode()).hexdigest()[:12]


class Cgroups:
    def __init__(self, root: Path, hierarchy: Path | None = None) -> None:
        self.hierarchy = hierarchy if hierarchy is not None else pids_hierarchy()
        self.parent = self.hierarchy / parent_name(str(root)) if self.hierarchy else None

    @property
    def available(self) -> bool:
        return self.parent is not None

    def path(self, container_id: str) -> Path | None:
        return self.parent / container_id if self.parent else None

    def _v2(self) -> bool:
        return self.hierarchy is not None and (self.hierarchy / "cgroup.controllers").exists()

    def create(self, container_id: str, pids_limit: int) -> list[str]:
        """Make (or reuse) the container's cgroup; the directories its processes join."""
        if self.parent is None:
            return []
        path = self.parent / container_id
        try:
            self.parent.mkdir(exist_ok=True)
            if self._v2():
                # v2: a controller reaches a child only through its parents' subtree_control.
                for directory in (self.hierarchy, self.parent):
                    assert directory is not None
                    control = directory / "cgroup.subtree_control"
                    if "pids" not in control.read_text().split():
                        control.write_text("+pids")
            path.mkdir(exist_ok=True)
            (path / "pids.max").write_text(str(pids_limit) if pids_limit > 0 else "max")
        except OSError as e:
            raise KernelError(f"cannot make the pids cgroup {path}: {e.strerror}") from e
        return [str(path)]

    def remove(self, container_id: str) -> bool:
        """Remove the container's cgroup once its processes are gone; True when removed or absent."""
        if self.parent is None:
            return True
        path = self.parent / container_id
        for _ in range(50):  # the last processes of a PID namespace leave within moments
            try:
                path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError as e:
                if e.errno != errno.EBUSY:
                    return False
            time.sleep(0.002)
        return False

    def owned(self) -> list[str]:
        """The container ids that have a cgroup under this root's parent."""
        if self.parent is None or not self.parent.is_dir():
            return []
        return sorted(p.name for p in self.parent.iterdir() if p.is_dir())

    def remove_parent(self) -> bool:
        if self.parent is None:
            return True
        try:
            self.parent.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True


def join(directories: list[str]) -> None:
    """Move the calling process into these cgroups (between fork and exec)."""
    for directory in directories:
        fd = os.open(os.path.join(directory, PROCS), os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
