"""A private dockerd inside a lab's host namespace, for the Docker plugin tests.

Confined as bench/_reference.py's PrivateDocker is: a private mount
namespace, a sysfs of the lab's network namespace on /sys with the cgroup
tree kept, its own --data-root, --exec-root and socket. In that mount
namespace a tmpfs covers /run/docker (so what dockerd writes there stays
private), and the test's plugin directory is bound on /run/docker/plugins,
where dockerd discovers dockyard's socket. Stopped by PID; what it writes
outside its roots whatever it is told (/etc/docker/key.json) is removed
when it was not there before.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
DOCKER = "/usr/bin/docker"

_SCRIPT = (
    # $1: an empty directory to hold the cgroup tree while /sys is replaced; $2: the plugin directory.
    'mount --rbind /sys/fs/cgroup "$1" && mount -t sysfs sysfs /sys && '
    'mount --move "$1" /sys/fs/cgroup && mkdir -p /run/docker && '
    "mount -t tmpfs -o mode=0700 tmpfs /run/docker && mkdir /run/docker/plugins && "
    'mount --bind "$2" /run/docker/plugins && shift 2 && exec "$@"'
)


def why_not() -> str | None:
    for path in ("/usr/sbin/dockerd", DOCKER, "/usr/bin/containerd", str(BUSYBOX)):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install docker.io busybox-static)"
    return None


def busybox_rootfs() -> bytes:
    """busybox-static with a link for every applet (httpd, ip, nc...), /tmp."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755), ("proc", 0o555), ("sys", 0o555)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets.split():
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
                tar.addfile(link)
    return buf.getvalue()


def _mnt_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


class PrivateDockerd:
    def __init__(self, netns: str, plugins: Path) -> None:
        self.netns = netns
        # containerd's sockets go under the exec root: a unix socket path has at most 104 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="dyk-", dir="/tmp"))
        self.plugins = plugins
        self.sock = self.base / "exec" / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        # The containers' cgroups, under a parent of this dockerd's own: the containers
        # live in mount namespaces of their own, and outlive their shims.
        self.cgroup_parent = "dyk-" + self.base.name[4:]
        self.proc: subprocess.Popen[bytes] | None = None
        self.mnt: int | None = None
        self.key = Path("/etc/docker/key.json")
        self.key_existed = self.key.exists()

    def docker(
        self, *args: str, timeout: float = 120, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([DOCKER, *args], capture_output=True, timeout=timeout, env=self.env, input=input)
        return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())

    def docker_ok(self, *args: str, timeout: float = 120) -> str:
        r = self.docker(*args, timeout=timeout)
        assert r.returncode == 0, (
            f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr}{self.log_tail()}"
        )
        return r.stdout

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\ndockerd.log:\n" + "\n".join((self.base / "dockerd.log").read_text().splitlines()[-30:])
        return ""

    def start(self, timeout: float = 120) -> None:
        for d in ("exec", "data", "cgroup-hold"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        (self.base / "daemon.json").write_text("{}\n")
        cmd = [
            *("unshare", "--mount", "--propagation", "private"),
            *("nsenter", f"--net=/run/netns/{self.netns}"),
            *("sh", "-c", _SCRIPT, "sh", str(self.base / "cgroup-hold"), str(self.plugins)),
            "dockerd",
            *("--config-file", str(self.base / "daemon.json")),
            *("--data-root", str(self.base / "data"), "--exec-root", str(self.base / "exec")),
            *("--host", f"unix://{self.sock}", "--pidfile", str(self.base / "dockerd.pid")),
            *("--cgroup-parent", self.cgroup_parent),
            *("--bridge", "none", "--iptables=false", "--ip-forward=false", "--log-level", "info"),
        ]
        with open(self.base / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"dockerd exited {self.proc.returncode}{self.log_tail()}"
            if self.mnt is None:
                inode = _mnt_inode(self.proc.pid)
                self.mnt = inode if inode != _mnt_inode(os.getpid()) else None
            if self.docker("info", timeout=30).returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"dockerd did not answer within {timeout} s{self.log_tail()}")

    def cgroups(self) -> list[Path]:
        """The containers' cgroup directories, deepest first, in every hierarchy."""
        found: list[Path] = []
        for top in Path("/sys/fs/cgroup").iterdir():
            parent = top / self.cgroup_parent
            if parent.is_dir():
                found += [*sorted((p for p in parent.rglob("*") if p.is_dir()), reverse=True), parent]
        return found

    def processes(self) -> dict[int, str]:
        """pid -> name of dockerd, all it started (its mount namespace's) and the containers."""
        pids: set[int] = set()
        if self.mnt is not None:
            pids |= {int(e) for e in os.listdir("/proc") if e.isdigit() and _mnt_inode(int(e)) == self.mnt}
        for cgroup in self.cgroups():
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}
        out = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                out[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
        return out

    def _remove_cgroups(self) -> list[str]:
        left = []
        for cgroup in self.cgroups():
            try:
                cgroup.rmdir()
            except OSError as e:
                left.append(f"cgroup {cgroup}: {e}")
        return left

    def kill(self) -> list[str]:
        """SIGKILL dockerd and everything of its own (a crash); what could not be killed."""
        assert self.proc is not None
        pids = self.processes()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and set(self.processes()) & set(pids):
            time.sleep(0.1)
        return [f"process {pid} survived SIGKILL" for pid in set(self.processes()) & set(pids)]

    def stop(self) -> list[str]:
        """Stop dockerd by PID (and whatever of its own outlives it); what went wrong."""
        problems: list[str] = []
        if self.proc is None:
            shutil.rmtree(self.base, ignore_errors=True)
            return problems
        pids = set(self.processes())
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                problems.append(f"dockerd (pid {self.proc.pid}) ignored SIGTERM for 60 s; killed")
                self.proc.kill()
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and set(self.processes()) & pids:
            time.sleep(0.1)
        for pid in set(self.processes()) & pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            problems.append(f"docker process {pid} outlived dockerd; killed")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and set(self.processes()) & pids:
            time.sleep(0.1)
        problems += self._remove_cgroups()
        shutil.rmtree(self.base, ignore_errors=True)
        if not self.key_existed:
            self.key.unlink(missing_ok=True)
        return problems
