"""The reference tools, confined: a private dockerd and a private Podman in a namespace.

Not a benchmark itself (the leading underscore keeps it out of the smoke
test's list). Each tool runs inside a network namespace the benchmark made
(its host namespace), with its state under a directory of the benchmark's,
and is stopped by PID at the end; nothing of it reaches the root namespace.

- dockerd (Debian's docker.io, 20.10): the integration tests' private
  dockerd (tests/docker_lab.py: a private mount namespace with the lab's
  /sys and the cgroup tree kept, its own roots, socket and daemon.json, a
  private /run/docker), with Docker's bridge and docker-proxy as users run
  them; every process it starts (containerd, shims, docker-proxy) is found
  through its mount namespace for the memory and process counts, and killed
  by PID if it outlives dockerd.
- Podman 4.3 (netavark backend, crun): its own --root/--runroot, a
  containers.conf of the benchmark's (CONTAINERS_CONF), `--cgroups=disabled`
  (cgroups cannot be made inside the namespace here), and crun behind a
  wrapper that hides a cgroup v2 hierarchy with controllers in a hybrid
  setup, which crun refuses. What Podman writes outside its roots
  (/var/lib/containers, /run/containers, /var/lib/cni) is removed afterwards
  when it was not there before.

Images are a busybox-static root file system with its applet links (and any
extra binaries with their libraries, e.g. iperf3), imported locally: no
registry is ever asked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import REPO, BenchError, memory_of, process_name, run_cmd

sys.path.insert(1, str(REPO / "tests"))  # the private dockerd is the integration tests'

import docker_lab
from docker_lab import BUSYBOX, DockerFailed, PrivateDockerd, busybox_rootfs

NETNS_DIR = Path("/run/netns")


def rootfs_tar(dest: Path, extra: Sequence[str] = ()) -> Path:
    """A tar of busybox-static with its applet links, /tmp, and `extra` binaries with their libraries."""
    if not BUSYBOX.exists():
        raise BenchError(f"{BUSYBOX} is missing: apt-get install busybox-static (make bench does)")
    dest.write_bytes(busybox_rootfs(extra))
    return dest


class _Outside:
    """Paths a tool writes outside the roots it is given: removed afterwards if they were new."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.existed = {p: p.exists() for p in paths}

    def remove_new(self) -> None:
        for path, existed in self.existed.items():
            if not existed and (path.exists() or path.is_symlink()):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


# -- Docker --------------------------------------------------------------------------


class PrivateDocker:
    """A dockerd of the benchmark's own inside network namespace `netns`, state under `base`.

    The confined dockerd itself is the integration tests' (tests/docker_lab.py,
    one place for both); this adds the bench's ways: failures as BenchError,
    processes counted by part, memory.
    """

    def __init__(
        self, netns: str, base: Path, bip: str = "192.0.2.1/24", plugins: Path | None = None
    ) -> None:
        self.d = PrivateDockerd(netns, base, plugins=plugins, bip=bip, log_level="warn")
        self.env = self.d.env

    @staticmethod
    def why_not() -> str | None:
        """None when a side-by-side run is possible, else the reason it is not."""
        why = docker_lab.why_not()
        return f"{why}; make bench installs them" if why else None

    def version(self) -> str:
        return self.d.version()

    def argv(self, *args: str) -> list[str]:
        return self.d.argv(*args)

    def docker(self, *args: str, timeout: float = 120) -> str:
        try:
            return self.d.docker_ok(*args, timeout=timeout)
        except DockerFailed as e:
            raise BenchError(str(e)) from None

    def start(self, timeout: float = 60) -> None:
        try:
            self.d.start(timeout)
        except DockerFailed as e:
            raise BenchError(str(e)) from None

    def import_image(self, tar: Path, name: str) -> None:
        self.docker("import", "-c", "ENV PATH=/bin:/usr/bin", str(tar), name, timeout=300)

    def processes(self) -> list[int]:
        """dockerd and everything it started: containerd, shims, docker-proxy (not the containers)."""
        return self.d.daemon_processes()

    def memory(self) -> dict[str, float]:
        return memory_of(self.processes())

    def parts(self, own: set[int]) -> dict[str, list[int]]:
        """Its processes but `own` (the containers'), by part: dockerd, containerd, shims, other."""
        parts: dict[str, list[int]] = {"dockerd": [], "containerd": [], "shims": [], "other": []}
        for pid in self.processes():
            if pid not in own:
                name = process_name(pid)
                shim = name.startswith("containerd-shim")
                parts[name if name in ("dockerd", "containerd") else "shims" if shim else "other"].append(pid)
        return parts

    def stop(self) -> list[str]:
        """Remove every container, stop dockerd by its PID, remove its state; what went wrong."""
        return self.d.stop(remove_containers=True)


# -- Podman --------------------------------------------------------------------------


class PrivatePodman:
    """Podman with its roots and configuration under `base`, run inside network namespace `netns`."""

    OUTSIDE = (Path("/var/lib/containers"), Path("/run/containers"), Path("/var/lib/cni"))

    def __init__(self, netns: str, base: Path) -> None:
        self.netns = netns
        self.base = base
        self.outside = _Outside(list(self.OUTSIDE))
        self.env = {**os.environ, "CONTAINERS_CONF": str(base / "containers.conf")}
        self.started: set[str] = set()  # names of detached containers, for stop()
        self.netns_before = self._podman_netns()

    @staticmethod
    def why_not() -> str | None:
        for tool in ("podman", "crun"):
            if not shutil.which(tool):
                return f"no {tool} (apt-get install podman crun; make bench does)"
        if not BUSYBOX.exists():
            return f"no {BUSYBOX} for its image (apt-get install busybox-static)"
        return None

    def version(self) -> str:
        with contextlib.suppress(BenchError):
            return run_cmd(["podman", "--version"], "podman --version").strip()
        return "?"

    def start(self) -> None:
        b = self.base
        for d in ("tmp", "net.d", "crun-state"):
            (b / d).mkdir(parents=True, exist_ok=True)
        controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
        hide = (
            "mount -t tmpfs -o ro none /sys/fs/cgroup/unified && "
            if controllers.exists() and controllers.read_text().strip()
            else ""
        )
        crun = shutil.which("crun") or "crun"
        wrapper = b / "crun-wrapper"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec unshare --mount --propagation private sh -c "
            f'\'{hide}exec {crun} --root {b / "crun-state"} "$@"\' crun "$@"\n'
        )
        wrapper.chmod(0o755)
        (b / "containers.conf").write_text(
            f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
tmp_dir = "{b / "tmp"}"
volume_path = "{b / "volumes"}"
events_logger = "none"
lock_type = "file"
cgroup_manager = "cgroupfs"
runtime = "crun"

[engine.runtimes]
crun = ["{wrapper}"]

[network]
network_backend = "netavark"
network_config_dir = "{b / "net.d"}"
"""
        )

    def argv(self, *args: str) -> list[str]:
        return [
            *("nsenter", f"--net={NETNS_DIR / self.netns}", "podman"),
            *("--root", str(self.base / "root"), "--runroot", str(self.base / "runroot")),
            *("--storage-driver", "vfs"),
            *args,
        ]

    def podman(self, *args: str, timeout: float = 120) -> str:
        return run_cmd(self.argv(*args), f"podman {args[0]}", timeout=timeout, env=self.env)

    def import_image(self, tar: Path, name: str) -> None:
        self.podman("import", "-c", "ENV PATH=/bin:/usr/bin", str(tar), name, timeout=300)

    def run_detached(self, name: str, *args: str) -> None:
        self.podman("run", "-d", "--cgroups=disabled", "--name", name, *args)
        self.started.add(name)

    def stop(self) -> list[str]:
        problems: list[str] = []
        if not (self.base / "containers.conf").exists():
            return problems
        for args in (("rm", "-af", "-t", "0"), ("rmi", "-af")):
            try:
                self.podman(*args, timeout=300)
            except BenchError as e:
                problems.append(str(e))
        # Podman's own state is under base; conmon processes end with their containers.
        left = sorted(self._podman_netns() - self.netns_before)
        if left:
            problems.append(f"podman left network namespaces {left}")
        shutil.rmtree(self.base, ignore_errors=True)
        self.outside.remove_new()
        return problems

    @staticmethod
    def _podman_netns() -> set[str]:
        """Podman's container namespaces (netns-<uuid> under /run/netns)."""
        return {entry.name for entry in NETNS_DIR.glob("netns-*")}
