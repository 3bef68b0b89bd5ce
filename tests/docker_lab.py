"""A private dockerd inside a lab's host namespace: the one the plugin tests and the bench share.

Debian's dockerd (docker.io 20.10) runs in a network namespace the caller
made. `ip netns exec` would mount a fresh /sys that hides the cgroup mounts
dockerd needs ("Devices cgroup isn't mounted"), and plain `nsenter --net`
would leave the root namespace's /sys (its /sys/class/net) in view. So
dockerd starts in a private mount namespace of its own: the cgroup tree is
set aside, a sysfs of the lab's network namespace is mounted on /sys and
the cgroup tree moved back on top; a tmpfs covers /run/docker, so that what
dockerd writes there stays private, and a plugin directory, when given, is
bound on /run/docker/plugins, where dockerd discovers dockyard's socket.
Its --data-root, --exec-root, socket and daemon.json are under a directory
of the caller's. Every process it starts (containerd, shims, docker-proxy)
is found through its mount namespace, the containers' through their cgroup
parent (they live in mount namespaces of their own and outlive their
shims); everything is stopped by PID. What dockerd writes outside its roots
whatever it is told (/etc/docker/key.json) is removed when it was not there
before.

Two shapes: with `bip`, Docker's own bridge network with its iptables rules
(in the lab's namespace) and docker-proxy, as users run it; without, no
bridge and no iptables, for a dockerd whose networks are all a plugin's.
The bench (bench/_reference.py) stands on this module; tests never import
the bench.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"
NETNS_DIR = Path("/run/netns")

_SCRIPT = (
    # $1: an empty directory to hold the cgroup tree while /sys is replaced; $2: the plugin
    # directory to bind on /run/docker/plugins, or "" for none; $3: a host name of dockerd's
    # own (in a UTS namespace of its own), or "" for the machine's.
    'mount --rbind /sys/fs/cgroup "$1" && mount -t sysfs sysfs /sys && '
    'mount --move "$1" /sys/fs/cgroup && mkdir -p /run/docker && '
    "mount -t tmpfs -o mode=0700 tmpfs /run/docker && mkdir /run/docker/plugins && "
    '{ [ -z "$2" ] || mount --bind "$2" /run/docker/plugins; } && '
    '{ [ -z "$3" ] || hostname "$3"; } && shift 3 && exec "$@"'
)


class DockerFailed(AssertionError):
    """A docker command failed, or dockerd did not start: its stderr and the log's tail."""


def why_not() -> str | None:
    """None when a private dockerd can run here, else the reason it cannot."""
    for path in (DOCKERD, DOCKER, "/usr/bin/containerd", str(BUSYBOX)):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install docker.io busybox-static)"
    return None


def busybox_rootfs(extra: Sequence[str] = ()) -> bytes:
    """A tar of busybox-static with a link for every applet (httpd, ip, nc...), /tmp, and the
    `extra` binaries with their libraries."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout
    members: dict[str, str] = {}  # path in the image -> the host file it copies
    for binary in extra:
        path = shutil.which(binary) or binary
        members[path.lstrip("/")] = os.path.realpath(path)
        ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
        for line in ldd.stdout.splitlines():
            libs = [w for w in line.split() if w.startswith("/")]
            if libs:
                members[libs[0].lstrip("/")] = os.path.realpath(libs[0])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755), ("proc", 0o555), ("sys", 0o555)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets.split():
            if applet != "busybox" and f"bin/{applet}" not in members:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(link)
        for arcname, source in sorted(members.items()):
            tar.add(source, arcname=arcname)
    return buf.getvalue()


def _mnt_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


class PrivateDockerd:
    """A dockerd of the caller's own inside network namespace `netns`, its state under `base`.

    start() may follow stop(keep=True) or kill(): the same data root, as a
    restarted dockerd finds it.
    """

    def __init__(
        self,
        netns: str,
        base: Path | None = None,
        plugins: Path | None = None,
        bip: str | None = None,
        log_level: str = "info",
        userland_proxy: bool = True,
        config: dict[str, object] | None = None,
        hostname: str = "",
    ) -> None:
        self.netns = netns
        # containerd's sockets go under the exec root: a unix socket path has at most 104 bytes.
        self.base = base or Path(tempfile.mkdtemp(prefix="dyk-", dir="/tmp"))
        self.plugins = plugins
        self.bip = bip
        self.log_level = log_level
        self.userland_proxy = userland_proxy
        # Further daemon.json keys (a cluster store, ...).
        self.config = dict(config or {})
        # Two dockerds of one cluster store must not share the machine's name (their gossip
        # refuses a name twice): each gets its own, in a UTS namespace of its own.
        self.hostname = hostname
        self.sock = self.base / "exec" / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        # The containers' cgroups, under a parent of this dockerd's own.
        self.cgroup_parent = "dyk-" + os.urandom(4).hex()
        self.proc: subprocess.Popen[bytes] | None = None
        self.mnt: int | None = None
        self.key = Path("/etc/docker/key.json")
        self.key_existed = self.key.exists()

    @staticmethod
    def version() -> str:
        r = subprocess.run([DOCKERD, "--version"], capture_output=True, text=True, check=False)
        return r.stdout.strip() or "?"

    def argv(self, *args: str) -> list[str]:
        return [DOCKER, *args]

    def docker(
        self, *args: str, timeout: float = 120, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(*args), capture_output=True, timeout=timeout, env=self.env, input=input)
        return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())

    def docker_ok(self, *args: str, timeout: float = 120, input: bytes | None = None) -> str:
        r = self.docker(*args, timeout=timeout, input=input)
        if r.returncode != 0:
            raise DockerFailed(
                f"docker {' '.join(args)[:200]} failed ({r.returncode}): {r.stderr.strip()}{self.log_tail()}"
            )
        return r.stdout

    def import_busybox(self, name: str = "busybox", extra: Sequence[str] = ()) -> None:
        """busybox-static (and `extra` binaries) imported as image `name`: no registry is asked."""
        self.docker_ok(
            "import", "-c", "ENV PATH=/bin:/usr/bin", "-", name, input=busybox_rootfs(extra), timeout=300
        )

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\ndockerd.log:\n" + "\n".join((self.base / "dockerd.log").read_text().splitlines()[-30:])
        return ""

    def start(self, timeout: float = 120) -> None:
        for d in ("exec", "data", "cgroup-hold"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        # Not the host's /etc/docker/daemon.json.
        config = {"userland-proxy": self.userland_proxy, **self.config}
        (self.base / "daemon.json").write_text(json.dumps(config) + "\n")
        if self.bip:
            network = ["--bip", self.bip]
        else:
            network = ["--bridge", "none", "--iptables=false", "--ip-forward=false"]
        plugins = str(self.plugins) if self.plugins else ""
        cmd = [
            *("unshare", "--mount", *(("--uts",) if self.hostname else ()), "--propagation", "private"),
            *("nsenter", f"--net={NETNS_DIR / self.netns}"),
            *("sh", "-c", _SCRIPT, "sh", str(self.base / "cgroup-hold"), plugins, self.hostname),
            DOCKERD,
            *("--config-file", str(self.base / "daemon.json")),
            *("--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec")),
            *("--host", f"unix://{self.sock}", "--pidfile", str(self.base / "dockerd.pid")),
            *("--cgroup-parent", self.cgroup_parent),
            *network,
            *("--log-level", self.log_level),
        ]
        self.mnt = None
        with open(self.base / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DockerFailed(f"dockerd exited {self.proc.returncode}{self.log_tail()}")
            if self.mnt is None:
                # unshare, nsenter and sh exec into dockerd: its mount namespace once it is its own.
                inode = _mnt_inode(self.proc.pid)
                self.mnt = inode if inode != _mnt_inode(os.getpid()) else None
            if self.docker("info", timeout=30).returncode == 0:
                return
            time.sleep(0.2)
        raise DockerFailed(f"dockerd did not answer within {timeout} s{self.log_tail()}")

    def cgroups(self) -> list[Path]:
        """The containers' cgroup directories, deepest first, in every hierarchy."""
        found: list[Path] = []
        for top in Path("/sys/fs/cgroup").iterdir():
            parent = top / self.cgroup_parent
            if parent.is_dir():
                found += [*sorted((p for p in parent.rglob("*") if p.is_dir()), reverse=True), parent]
        return found

    def daemon_processes(self) -> list[int]:
        """dockerd and all it started: in its mount namespace (containerd, shims, docker-proxy),
        or working in its state, as a shim does in its bundle under base/exec. The second finds
        a shim whose dockerd is gone (containerd started it as dockerd stopped, and the restarted
        dockerd has a mount namespace of its own): one outlived a test and held its lab."""
        pids = set(self.working_in_base())
        if self.mnt is not None:
            pids.update(int(e) for e in os.listdir("/proc") if e.isdigit() and _mnt_inode(int(e)) == self.mnt)
        return sorted(pids)

    def working_in_base(self) -> list[int]:
        """Processes whose working directory is in this dockerd's state (its shims): found
        so even once its mount namespace is gone and its number perhaps another's."""
        inside = f"{self.base}/"
        return [
            pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _cwd(pid).startswith(inside)
        ]

    def processes(self) -> dict[int, str]:
        """pid -> name of dockerd, all it started and the containers' processes."""
        pids = set(self.daemon_processes())
        for cgroup in self.cgroups():
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}
        return {pid: name for pid in pids if (name := _comm(pid)) is not None}

    def _wait_gone(self, pids: set[int], timeout: float) -> set[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and set(self.processes()) & pids:
            time.sleep(0.1)
        return set(self.processes()) & pids

    def kill(self) -> list[str]:
        """SIGKILL dockerd and everything of its own (a crash); what could not be killed."""
        assert self.proc is not None
        pids = set(self.processes())
        # dockerd first: alive a moment longer, it would see its containers die and tear their
        # networking down through the plugin, which is not what a crash does.
        self.proc.kill()
        self.proc.wait(timeout=30)
        # Until none is left: one started as dockerd died (containerd starting a shim) is not
        # in the first list, and outlived a crash test once, idle, for an hour.
        deadline = time.monotonic() + 20
        while (alive := set(self.processes()) | pids) and time.monotonic() < deadline:
            for pid in alive - {self.proc.pid}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pids = set(self.processes())
            if pids:
                time.sleep(0.1)
        left = [f"process {pid} survived SIGKILL" for pid in set(self.processes())]
        # A restarted dockerd takes a containerd whose pid file names a live process for its own
        # and waits for its socket; a killed containerd not yet reaped (or its PID used again)
        # is one. The exec root is a /run of its own: gone, as after a reboot.
        (self.base / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)
        return left

    def stop(self, keep: bool = False, remove_containers: bool = False) -> list[str]:
        """Stop dockerd by PID (and whatever of its own outlives it); what went wrong.

        With keep, its state stays for a start() again; else it is removed.
        """
        problems: list[str] = []
        if self.proc is None:
            if not keep:
                shutil.rmtree(self.base, ignore_errors=True)
            return problems
        names = self.processes()
        pids = set(names)
        if self.proc.poll() is None:
            if remove_containers:
                with contextlib.suppress(DockerFailed, subprocess.TimeoutExpired):
                    ids = self.docker_ok("ps", "-aq", timeout=60).split()
                    if ids:
                        self.docker_ok("rm", "-f", *ids, timeout=600)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                problems.append(f"dockerd (pid {self.proc.pid}) ignored SIGTERM for 60 s; killed")
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in self._wait_gone(pids, 10):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            problems.append(f"docker process {pid} ({names[pid]}) outlived dockerd; killed")
        self._wait_gone(pids, 10)
        # One started while dockerd stopped (containerd starting a shim) is in no list made
        # before; Docker's own doing, not what a test checks, but it must not outlive the test.
        late = set(self.working_in_base()) - pids
        for pid in late:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while late & set(self.working_in_base()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if keep:
            return problems
        for cgroup in self.cgroups():
            try:
                cgroup.rmdir()
            except OSError as e:
                problems.append(f"cgroup {cgroup}: {e}")
        shutil.rmtree(self.base, ignore_errors=True)
        if not self.key_existed:
            self.key.unlink(missing_ok=True)
        return problems
