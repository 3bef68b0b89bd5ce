"""containerd runs a container whose network comes from dockyard-cni: a second real CNI client.

Debian's containerd 1.6 and its `ctr`, started by the test in the lab's
host namespace with its own root, state, socket and config, inside a mount
namespace of its own. ctr 1.6 reads CNI configs only from /etc/cni/net.d and
plugins only from /opt/cni/bin (gocni's defaults, no flag changes them), so
that mount namespace has the test's directories over those two (a tmpfs on
/opt), and a tmpfs over /run/containerd, where the runc shim keeps its
sockets and state whatever it is told: nothing of this run reaches the
machine's containerd, if any.

The image is a `docker save` archive the test builds from busybox-static,
loaded with `ctr image import`. `ctr run --cni` (in the foreground: only
then does ctr 1.6 call DEL itself, when the task ends) execs dockyard-cni
with CNI_NETNS=/proc/<task pid>/ns/net; the container gets its address and
default route, and the lab's host reaches its HTTP server. ctr 1.6 cannot
pass port mappings (gocni's Setup is called without the portMappings
capability and `ctr run` has no -p), so no port is published here; the
Podman test covers published ports. `ctr task kill` ends the task, ctr
calls DEL, `--rm` removes the container: no attachment, veth or shim is
left, and the lab's leak check finds nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from cni_runtime import PLUGIN

from dockyard.clients.api import Client
from lab import Lab, pid_alive

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
BUSYBOX = Path("/bin/busybox")
IMAGE = "docker.io/library/dyk-busybox:latest"
SUBNET = "10.62.0.0/24"
GATEWAY = "10.62.0.1"
NAMESPACE = "dyk"

pytestmark = pytest.mark.skipif(
    CONTAINERD is None or CTR is None or not BUSYBOX.exists(),
    reason="containerd (with ctr) or busybox-static is not installed: apt-get install containerd "
    "busybox-static (make test does)",
)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_archive(tag: str) -> bytes:
    """A `docker save` archive of one layer: busybox, its links, and a page for httpd."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        t.add(str(BUSYBOX), "bin/busybox")
        for name in ("sh", "httpd", "sleep", "ip", "cat"):
            info = tarfile.TarInfo(f"bin/{name}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            t.addfile(info)
        page = b"served by a containerd task\n"
        info = tarfile.TarInfo("www/index.html")
        info.size = len(page)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(page))
        for name in ("tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            t.addfile(info)
    layer_bytes = layer.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_bytes)]},
        },
        sort_keys=True,
    ).encode()
    config_name = f"{_sha256(config)[7:]}.json"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in (
            ("layer/layer.tar", layer_bytes),
            (config_name, config),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": config_name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}]
                ).encode(),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Containerd:
    """containerd in the lab's host namespace, in a mount namespace of its own, under `base`."""

    def __init__(self, lab: Lab, base: Path) -> None:
        self.lab = lab
        self.base = base
        # In the tmpfs on /run/containerd of its mount namespace, where ctr (entering it) finds it:
        # a unix socket's path must be short, and a test's directory may not be. Named by the lab,
        # so that its shims, which carry it on their command line, are told from another run's.
        self.address = Path(f"/run/containerd/dyk-{lab.host[-6:]}.sock")
        for d in ("root", "state", "net.d"):
            (base / d).mkdir(parents=True)
        conflist = {
            "cniVersion": "1.0.0",  # what containerd 1.6's go-cni reads
            "name": "dynet",
            "plugins": [
                {
                    "type": "dockyard",
                    "bridge": "cni-ctrd9",
                    "subnet": SUBNET,
                    "ipMasq": True,
                    "dataDir": str(lab.root),
                    "capabilities": {"portMappings": True},
                }
            ],
        }
        (base / "net.d" / "10-dynet.conflist").write_text(json.dumps(conflist, indent=2))
        (base / "config.toml").write_text(
            f'version = 2\nroot = "{base / "root"}"\nstate = "{base / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\naddress = "{self.address}"\n'
            '[ttrpc]\naddress = ""\n'
        )
        script = (
            "set -e; mount -t tmpfs none /opt; mkdir -p /opt/cni/bin; "
            f"ln -s {PLUGIN} /opt/cni/bin/dockyard; "
            f"mount --bind {base / 'net.d'} /etc/cni/net.d; "
            "mount -t tmpfs none /run/containerd; "
            f"exec nsenter --net=/run/netns/{lab.host} {CONTAINERD} --config {base / 'config.toml'}"
        )
        self.log = open(base / "containerd.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        lab.procs.append(self.proc)  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while self.ctr("version").returncode != 0:
            assert self.proc.poll() is None, (base / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not answer within 30 s"
            time.sleep(0.1)

    def cmd(self, *args: str) -> list[str]:
        """ctr against this containerd, in its mount namespace and the lab's host netns."""
        return [
            *("nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", f"--net=/run/netns/{self.lab.host}"),
            *(str(CTR), "--address", str(self.address), "--namespace", NAMESPACE, *args),
        ]

    def ctr(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.cmd(*args), capture_output=True, input=input, timeout=60)

    def ctr_ok(self, *args: str, input: bytes | None = None) -> str:
        r = self.ctr(*args, input=input)
        assert r.returncode == 0, f"ctr {' '.join(args)}: {r.stderr.decode()[-1500:]}"
        return r.stdout.decode()

    def own_processes(self) -> list[int]:
        """Processes started for this containerd: its shims name its socket on their command line."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.proc.pid:
                with contextlib.suppress(OSError):
                    if str(self.address).encode() in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
        return found

    def stop(self) -> list[str]:
        left = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                left.append("containerd did not stop on SIGTERM")
                self.proc.kill()
                self.proc.wait()
        for pid in self.own_processes():
            left.append(f"process {pid} of containerd")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.log.close()
        return left


@pytest.fixture
def containerd(lab: Lab, tmp_path: Path) -> Iterator[Containerd]:
    lab.dy_ok("network", "ls")  # the daemon up in the lab, started from the test's mount namespace
    c = Containerd(lab, tmp_path / "containerd")
    try:
        yield c
    finally:
        left = c.stop()
        assert not left, left


def _attachments(lab: Lab) -> list[dict[str, Any]]:
    return Client(str(lab.root), autostart=False).request("GET", "/dockyard/cni/attachments")["Attachments"]


def _task_pid(c: Containerd, name: str) -> int | None:
    for line in c.ctr_ok("task", "ls").splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == name and parts[2] == "RUNNING":
            return int(parts[1])
    return None


def test_ctr_run_cni_gets_address_route_and_reachability_from_dockyard(
    lab: Lab, containerd: Containerd
) -> None:
    c = containerd
    c.ctr_ok("image", "import", "-", input=busybox_archive(IMAGE))
    assert IMAGE in c.ctr_ok("image", "ls", "-q")
    # Its own name and cgroup (directly under each hierarchy's root, which runc removes with the
    # task): another session's run of this test may be on the machine.
    name = f"web-{lab.host[-6:]}"
    cgroup = f"/dyk-{name}"
    run = subprocess.Popen(
        c.cmd(
            *("run", "--cni", "--rm", "--null-io", "--cgroup", cgroup),
            *(IMAGE, name, "httpd", "-f", "-p", "80", "-h", "/www"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lab.procs.append(run)  # type: ignore[arg-type]
    deadline = time.monotonic() + 60
    pid = None
    while (pid := _task_pid(c, name)) is None or not _attachments(lab):
        assert run.poll() is None, run.communicate()[1].decode()[-1500:]
        assert time.monotonic() < deadline, "the task did not start with its network within 60 s"
        time.sleep(0.1)
    (attached,) = _attachments(lab)
    # ctr names the namespace by its task's pid, a path the plugin opens and passes.
    assert attached["Netns"] == f"/proc/{pid}/ns/net" and attached["ContainerID"] == f"{NAMESPACE}-{name}"
    seen = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "-4", "addr", "show", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    )
    (address,) = [a["local"] for link in json.loads(seen.stdout) for a in link["addr_info"]]
    assert address.startswith("10.62.0.")
    routes = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "route", "show", "default"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [r.get("gateway") for r in json.loads(routes.stdout)] == [GATEWAY]
    assert "cni-ctrd9" in lab.links()
    # The lab's host reaches the task's server at its address.
    fetch = (
        "import sys, time, urllib.request\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()); break\n"
        "    except OSError: time.sleep(0.1)\n"
    )
    got = subprocess.run(
        ["nsenter", f"--net=/run/netns/{lab.host}", sys.executable, "-c", fetch, f"http://{address}/"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "served by a containerd task" in got.stdout, got.stderr
    # kill ends the task; ctr calls DEL, then --rm removes the container.
    c.ctr_ok("task", "kill", "--signal", "SIGKILL", name)
    run.wait(timeout=60)
    assert c.ctr_ok("container", "ls", "-q").split() == []
    Client(str(lab.root), autostart=False).settle()
    assert _attachments(lab) == []
    assert [name for name in lab.links() if name.startswith("veth")] == []
    assert not pid_alive(pid)
    assert not [h for h in Path("/sys/fs/cgroup").iterdir() if (h / cgroup.lstrip("/")).exists()]
