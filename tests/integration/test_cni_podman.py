"""Podman starts a container whose network comes from dockyard-cni.

Debian's podman 4.3 with `network_backend = "cni"`, its CNI config directory
holding one conflist of type dockyard, its own --root/--runroot/tmp_dir under
the test's directory, run in the lab's host namespace (nsenter --net, the
mount namespace kept). The image is a busybox-static root filesystem imported
with `podman import`: no registry. The container must get its address, its
default route and its published port from dockyard-cni, and lose them when
podman removes it.

Podman writes a few things outside its roots whatever it is told (libcni's
result cache in /var/lib/cni, c/image's caches under /var/lib/containers and
/var/cache/containers); the test removes those it created, and so that what
it finds there is its own, it runs alone on the machine (a lock taken by
every session's run of it). Two settings are
for this test machine only: explicit ulimits (the container runtime may not
raise them here), and a crun wrapper that hides a cgroup v2 hierarchy that
has controllers in a hybrid setup, which crun refuses, inside a private mount
namespace of crun's own. Skipped, saying so, when podman is not installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from cni_runtime import PLUGIN, REFERENCE_DIR

from dockyard.clients.api import Client
from lab import HOST_ADDR, UP_ADDR, Lab

PODMAN = shutil.which("podman")
CRUN = shutil.which("crun")
BUSYBOX = Path("/bin/busybox")
IMAGE = "localhost/dyk-busybox:latest"
NETWORK = "dynet"
SUBNET = "10.61.0.0/24"
GATEWAY = "10.61.0.1"
# The dual-stack variant's IPv6 range set (CNI's ranges: one set per family).
SUBNET6 = "2001:db8:61::/64"
GATEWAY6 = "2001:db8:61::1"
# Written by podman (through libcni and c/image) outside the roots it is given.
OUTSIDE = (Path("/var/lib/cni"), Path("/var/lib/containers"), Path("/var/cache/containers"))

pytestmark = pytest.mark.skipif(
    PODMAN is None or CRUN is None,
    reason="podman (with crun) is not installed: apt-get install podman crun busybox-static (make test does)",
)

PEER_CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "peer=$REMOTE_ADDR"\n'


def _hybrid_cgroup_v2_with_controllers() -> bool:
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    return controllers.exists() and bool(controllers.read_text().strip())


class Podman:
    """Podman confined to a directory, in the lab's host namespace."""

    def __init__(self, lab: Lab, base: Path, dual: bool = False) -> None:
        self.lab = lab
        self.base = base
        self.dual = dual
        self.existed = {p: p.exists() for p in OUTSIDE}
        self.netns_seen: set[str] = set()
        self.env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"))
        self._write_config()

    def _write_config(self) -> None:
        b = self.base
        for d in ("cni-bin", "net.d", "tmp"):
            (b / d).mkdir(parents=True)
        (b / "cni-bin" / "dockyard").symlink_to(PLUGIN)
        conflist = {
            "cniVersion": "1.0.0",  # what podman 4.3's libcni reads
            "name": NETWORK,
            "plugins": [
                {
                    "type": "dockyard",
                    "bridge": "cni-podman9",
                    **(
                        {"ranges": [[{"subnet": SUBNET}], [{"subnet": SUBNET6}]]}
                        if self.dual
                        else {"subnet": SUBNET}
                    ),
                    "ipMasq": True,
                    "dataDir": str(self.lab.root),
                    "capabilities": {"portMappings": True, "ips": True, "mac": True},
                }
            ],
        }
        (b / "net.d" / f"{NETWORK}.conflist").write_text(json.dumps(conflist, indent=2))
        hide = (
            "mount -t tmpfs -o ro none /sys/fs/cgroup/unified && "
            if _hybrid_cgroup_v2_with_controllers()
            else ""
        )
        wrapper = b / "crun-wrapper"
        wrapper.write_text(
            "#!/bin/sh\n"
            "# crun with its state under the test's directory, in a mount namespace of its own.\n"
            f"exec unshare --mount --propagation private sh -c '{hide}exec {CRUN} --root {b / 'crun-state'} \"$@\"' "
            'crun "$@"\n'
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
network_backend = "cni"
network_config_dir = "{b / "net.d"}"
cni_plugin_dirs = ["{b / "cni-bin"}", "{REFERENCE_DIR}"]
"""
        )

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        cmd = [
            "nsenter",
            f"--net=/run/netns/{self.lab.host}",
            str(PODMAN),
            "--root",
            str(self.base / "root"),
            "--runroot",
            str(self.base / "runroot"),
            "--storage-driver",
            "vfs",
            *args,
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def import_image(self) -> None:
        rootfs = self.base / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        (rootfs / "www" / "cgi-bin").mkdir(parents=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in ("sh", "httpd", "ip", "sleep", "cat"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        cgi = rootfs / "www" / "cgi-bin" / "peer"
        cgi.write_text(PEER_CGI)
        cgi.chmod(0o755)
        tar = self.base / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        self("import", str(tar), IMAGE)

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(self("inspect", ref))[0]

    def cleanup(self) -> list[str]:
        """Remove containers, images and what podman wrote outside its roots; say what was left."""
        left = []
        with contextlib.suppress(Exception):
            self("rm", "-af", "-t", "0", check=False)
            self("rmi", "-af", check=False)
        for path in OUTSIDE:
            if not self.existed[path] and path.exists():
                shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
        left += [f"podman's netns {name}" for name in self.netns_seen if (Path("/run/netns") / name).exists()]
        return left


def _http_peer(lab: Lab, host: str, port: int, deadline: float = 15.0) -> str:
    code = (
        "import sys, urllib.request\n"
        f"print(urllib.request.urlopen('http://{host}:{port}/cgi-bin/peer', timeout=2).read().decode().strip())"
    )
    end = time.monotonic() + deadline
    last = ""
    while time.monotonic() < end:
        r = lab.in_up(sys.executable, "-c", code, timeout=10)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
        last = r.stderr.strip()[-300:]
        time.sleep(0.2)
    raise AssertionError(f"nothing answered http://{host}:{port} from upstream within {deadline} s: {last}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def outside_paths_ours() -> Iterator[None]:
    """Hold the machine's OUTSIDE paths for this test: another session's run of it
    would create (or remove) them under it. The lock is on /var/lib, their parent
    directory, so that nothing is left behind for it."""
    fd = os.open("/var/lib", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.mark.parametrize("family", ["ipv4", "dual"])
def test_podman_container_networked_by_dockyard_cni(lab: Lab, outside_paths_ours: None, family: str) -> None:
    # Podman wants a run root of at most 50 characters: pytest's tmp_path is too long.
    podman = Podman(lab, Path(tempfile.mkdtemp(prefix="dyk-podman-")), dual=family == "dual")
    try:
        podman.import_image()
        assert NETWORK in podman("network", "ls", "--format", "{{.Name}}").split()
        cid = podman(
            "run",
            "-d",
            "--cgroups=disabled",
            "--network",
            NETWORK,
            "-p",
            "8087:80",
            "--name",
            "web",
            IMAGE,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ).strip()
        info = podman.inspect("web")
        sandbox = info["NetworkSettings"]["SandboxKey"]
        podman.netns_seen.add(Path(sandbox).name)
        net = info["NetworkSettings"]["Networks"][NETWORK]
        address = net["IPAddress"]
        assert address.startswith("10.61.0.") and net["IPPrefixLen"] == 24 and net["Gateway"] == GATEWAY

        # Inside the container: the address and the default route dockyard-cni gave.
        assert f"{address}/24" in podman("exec", "web", "ip", "-o", "-4", "addr", "show", "eth0")
        assert f"default via {GATEWAY}" in podman("exec", "web", "ip", "route")
        if family == "dual":
            # Dual stack: podman shows the IPv6 address dockyard-cni gave, which the container has,
            # with its default IPv6 route.
            address6 = net["GlobalIPv6Address"]
            assert address6.startswith("2001:db8:61::") and net["GlobalIPv6PrefixLen"] == 64
            assert net["IPv6Gateway"] == GATEWAY6
            assert f"{address6}/64" in podman("exec", "web", "ip", "-o", "-6", "addr", "show", "eth0")
            assert f"default via {GATEWAY6}" in podman("exec", "web", "ip", "-6", "route")

        # dockyard records the attachment in the network podman named.
        members = json.loads(lab.dy_ok("network", "inspect", NETWORK))[0]["Containers"]
        assert [m["Name"] for m in members.values()] == [f"cni:{cid[:12]}/eth0"]
        assert [m["IPv4Address"] for m in members.values()] == [f"{address}/24"]

        # The published port answers from upstream, with the client's address kept (DNAT).
        answer = _http_peer(lab, HOST_ADDR, 8087)
        assert UP_ADDR in answer, answer
        pids = (info["State"]["ConmonPid"], info["State"]["Pid"])

        podman("rm", "-f", "-t", "0", "web")
        client = Client(str(lab.root), autostart=False)
        client.settle()
        assert client.request("GET", "/dockyard/cni/attachments")["Attachments"] == []
        assert json.loads(lab.dy_ok("network", "inspect", NETWORK))[0]["Containers"] == {}
        assert [name for name in lab.links() if name.startswith("veth")] == []
        assert lab.ask(lab.up, "tcp", HOST_ADDR, 8087, timeout=0.5) is None
        assert not Path(sandbox).exists(), "podman removed the container's netns"
        lab.eventually(lambda: not any(_alive(p) for p in pids), what="conmon and the container gone")
    finally:
        left = podman.cleanup()
    assert not left, left
    for path in OUTSIDE:
        assert path.exists() == podman.existed[path], f"{path} left behind by podman"
