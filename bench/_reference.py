"""The reference tools, confined: a private dockerd and a private Podman in a namespace.

Not a benchmark itself (the leading underscore keeps it out of the smoke
test's list). Each tool runs inside a network namespace the benchmark made
(its host namespace), with its state under a directory of the benchmark's,
and is stopped by PID at the end; nothing of it reaches the root namespace.

- dockerd (Debian's docker.io, 20.10): `ip netns exec` would mount a fresh
  /sys that hides the cgroup mounts dockerd needs ("Devices cgroup isn't
  mounted"), and plain `nsenter --net` would leave the root namespace's /sys
  (its /sys/class/net) in view. So dockerd starts in a private mount
  namespace of its own: the cgroup tree is set aside, a sysfs of the lab's
  network namespace is mounted on /sys, and the cgroup tree moved back on
  top. Its overlay mounts stay in that mount namespace, and every process it
  starts (containerd, shims, docker-proxy) is found through it. What dockerd
  writes outside its roots whatever it is told (/etc/docker/key.json,
  /run/docker) is removed afterwards when it was not there before.
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
import signal
import subprocess
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import (
    BenchError,
    memory_of,
    namespace_inode,
    process_name,
    processes_in_namespace,
    run_cmd,
    start_time,
)

BUSYBOX = Path("/bin/busybox")
NETNS_DIR = Path("/run/netns")


def _docker_client() -> str | None:
    # Debian's client matches its daemon; another client earlier on PATH may not.
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return shutil.which("docker")


def rootfs_tar(dest: Path, extra: Sequence[str] = ()) -> Path:
    """A tar of busybox-static with its applet links, /tmp, and `extra` binaries with their libraries."""
    if not BUSYBOX.exists():
        raise BenchError(f"{BUSYBOX} is missing: apt-get install busybox-static (make bench does)")
    applets = run_cmd([str(BUSYBOX), "--list"], "busybox --list").split()
    members: dict[str, str] = {}  # path in the image -> the host file it copies
    for binary in extra:
        path = shutil.which(binary) or binary
        members[path.lstrip("/")] = os.path.realpath(path)
        ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
        for line in ldd.stdout.splitlines():
            libs = [w for w in line.split() if w.startswith("/")]
            if libs:
                members[libs[0].lstrip("/")] = os.path.realpath(libs[0])
    with tarfile.open(dest, "w") as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755), ("proc", 0o555), ("sys", 0o555)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox" or f"bin/{applet}" in members:
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
        for arcname, source in sorted(members.items()):
            tar.add(source, arcname=arcname)
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


def _stop_pids(pids: dict[int, int], timeout: float = 10) -> list[int]:
    """SIGKILL what is still alive of these (pid -> start time) after a grace time; those killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(start_time(p) == s for p, s in pids.items()):
        time.sleep(0.1)
    killed = []
    for pid, started in pids.items():
        if start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


# -- Docker --------------------------------------------------------------------------

_DOCKERD_SCRIPT = (
    # $1: an empty directory to hold the cgroup tree while /sys is replaced.
    'mount --rbind /sys/fs/cgroup "$1" && mount -t sysfs sysfs /sys && '
    'mount --move "$1" /sys/fs/cgroup && shift && exec "$@"'
)


class PrivateDocker:
    """A dockerd of the benchmark's own inside network namespace `netns`, state under `base`."""

    def __init__(self, netns: str, base: Path, bip: str = "192.0.2.1/24") -> None:
        self.netns = netns
        self.base = base
        self.bip = bip
        self.sock = base / "exec" / "docker.sock"
        self.client = _docker_client() or "docker"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.mnt_ns: int | None = None
        self.outside = _Outside([Path("/etc/docker/key.json"), Path("/run/docker")])

    @staticmethod
    def why_not() -> str | None:
        """None when a side-by-side run is possible, else the reason it is not."""
        if _docker_client() is None:
            return "no docker client (apt-get install docker.io; make bench does)"
        if not shutil.which("dockerd"):
            return "no dockerd (apt-get install docker.io; make bench does)"
        if not BUSYBOX.exists():
            return f"no {BUSYBOX} for its image (apt-get install busybox-static)"
        return None

    def version(self) -> str:
        with contextlib.suppress(BenchError):
            return run_cmd(["dockerd", "--version"], "dockerd --version").strip()
        return "?"

    def argv(self, *args: str) -> list[str]:
        return [self.client, *args]

    def docker(self, *args: str, timeout: float = 120) -> str:
        return run_cmd(self.argv(*args), f"docker {args[0]}", timeout=timeout, env=self.env)

    def start(self, timeout: float = 60) -> None:
        for d in ("exec", "data", "cgroup-hold"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        (self.base / "daemon.json").write_text("{}\n")  # not the host's /etc/docker/daemon.json
        cmd = [
            *("unshare", "--mount", "--propagation", "private"),
            *("nsenter", f"--net={NETNS_DIR / self.netns}"),
            *("sh", "-c", _DOCKERD_SCRIPT, "sh", str(self.base / "cgroup-hold")),
            "dockerd",
            *("--config-file", str(self.base / "daemon.json")),
            *("--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec")),
            *("--host", f"unix://{self.sock}", "--pidfile", str(self.base / "dockerd.pid")),
            *("--bip", self.bip, "--log-level", "warn"),
        ]
        with open(self.base / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"dockerd exited {self.proc.returncode}; see {self.base / 'dockerd.log'}")
            if self.mnt_ns is None:
                self.mnt_ns = self._own_mount_ns()
            probe = subprocess.run(self.argv("info"), capture_output=True, env=self.env, timeout=30)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise BenchError(f"dockerd did not answer within {timeout:.0f} s; see {self.base / 'dockerd.log'}")

    def _own_mount_ns(self) -> int | None:
        """The mount namespace of dockerd once it runs (unshare, nsenter and sh exec into it)."""
        assert self.proc is not None
        inode = namespace_inode(self.proc.pid, "mnt")
        return inode if inode != namespace_inode(os.getpid(), "mnt") else None

    def import_image(self, tar: Path, name: str) -> None:
        self.docker("import", "-c", "ENV PATH=/bin:/usr/bin", str(tar), name, timeout=300)

    def processes(self) -> list[int]:
        """dockerd and everything it started: containerd, shims, docker-proxy, containers."""
        return processes_in_namespace("mnt", self.mnt_ns) if self.mnt_ns else []

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
        problems: list[str] = []
        if self.proc is None:
            return problems
        pids = {p: s for p in self.processes() if (s := start_time(p)) is not None}
        if self.proc.poll() is None:
            with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
                ids = self.docker("ps", "-aq", timeout=60).split()
                if ids:
                    self.docker("rm", "-f", *ids, timeout=600)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                problems.append(f"dockerd (pid {self.proc.pid}) ignored SIGTERM for 60 s; killed")
                self.proc.kill()
                self.proc.wait(timeout=10)
        killed = _stop_pids(pids)
        if killed:
            problems.append(f"docker processes {killed} outlived dockerd; killed")
        shutil.rmtree(self.base, ignore_errors=True)
        self.outside.remove_new()
        return problems


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
