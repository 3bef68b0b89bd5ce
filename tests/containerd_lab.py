"""A private containerd in a lab's host namespace: what the containerd CNI tests share.

Debian's containerd 1.6 runs in the lab's host namespace with its own root,
state, socket and config, inside a mount namespace of its own. ctr 1.6 reads
CNI configs only from /etc/cni/net.d and plugins only from /opt/cni/bin
(gocni's defaults, no flag changes them), so that mount namespace has the
test's directories over those two (a tmpfs on /opt), and a tmpfs over
/run/containerd, where the runc shim keeps its sockets and state whatever it
is told: nothing of this run reaches the machine's containerd, if any.

With `cri=True` the CRI plugin (the one kubelet talks to) is enabled too,
reading the same two directories, with the `loopback` reference plugin it
adds to every pod beside them, its sandbox image named by the caller and the
network namespaces of its pods mounted under its state directory (not in
/run/netns, which is the machine's). Its socket is reached from the test's
own mount namespace through /proc/<containerd>/root (see `grpc_address`).

The image is a `docker save` archive built from busybox-static, loaded with
`ctr image import`.
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

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

from cni_runtime import PLUGIN, REFERENCE_DIR

from lab import Lab

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
BUSYBOX = Path("/bin/busybox")
SUBNET = "10.62.0.0/24"
GATEWAY = "10.62.0.1"
BRIDGE = "cni-ctrd9"
NAMESPACE = "dyk"
CRI_NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin keeps its images and pods in

MISSING = (
    "containerd (with ctr) or busybox-static is not installed: apt-get install containerd "
    "busybox-static (make test does)"
)
AVAILABLE = CONTAINERD is not None and CTR is not None and BUSYBOX.exists()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_archive(tag: str, cmd: tuple[str, ...] = ("/bin/sh",)) -> bytes:
    """A `docker save` archive of one layer: busybox, its links, and a page for httpd.

    `cmd` is the image's default command (a pod sandbox's image must have one that
    keeps running: the CRI plugin runs it as the pod's first process)."""
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
            "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"]},
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


def _config(base: Path, address: Path, sandbox_image: str | None) -> str:
    """containerd's config.toml: the CRI plugin disabled, or enabled for a lab."""
    head = (
        f'version = 2\nroot = "{base / "root"}"\nstate = "{base / "state"}"\n'
        f'[grpc]\naddress = "{address}"\n'
        '[ttrpc]\naddress = ""\n'
    )
    if sandbox_image is None:
        return 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n' + head
    return head + (
        '[plugins."io.containerd.grpc.v1.cri"]\n'
        f'sandbox_image = "{sandbox_image}"\n'
        # The pods' namespaces under the state directory, in containerd's mount namespace:
        # /var/run/netns is the machine's.
        "netns_mounts_under_state_dir = true\n"
        "disable_apparmor = true\n"
        # Not below containerd's own: a sandbox's -998 needs CAP_SYS_RESOURCE, which a machine
        # that is itself a container may not give (runc: "failed to update oom_score_adj").
        "restrict_oom_score_adj = true\n"
        # Its streaming server (exec, attach) on the lab's loopback, on a port the kernel picks.
        'stream_server_address = "127.0.0.1"\nstream_server_port = "0"\n'
        '[plugins."io.containerd.grpc.v1.cri".cni]\n'
        'bin_dir = "/opt/cni/bin"\nconf_dir = "/etc/cni/net.d"\nmax_conf_num = 1\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd]\n'
        'snapshotter = "overlayfs"\n'
        # runc places the pods' cgroups by path (cgroupfs), under the cgroup parent a pod names.
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n'
        'runtime_type = "io.containerd.runc.v2"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
        "SystemdCgroup = false\n"
    )


class Containerd:
    """containerd in the lab's host namespace, in a mount namespace of its own, under `base`."""

    def __init__(self, lab: Lab, base: Path, sandbox_image: str | None = None) -> None:
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
                    "bridge": BRIDGE,
                    "subnet": SUBNET,
                    "ipMasq": True,
                    "dataDir": str(lab.root),
                    "capabilities": {"portMappings": True},
                }
            ],
        }
        (base / "net.d" / "10-dynet.conflist").write_text(json.dumps(conflist, indent=2))
        (base / "config.toml").write_text(_config(base, self.address, sandbox_image))
        # The CRI plugin brings every pod's loopback up with the reference plugin.
        loopback = f"ln -s {REFERENCE_DIR / 'loopback'} /opt/cni/bin/loopback; " if sandbox_image else ""
        script = (
            "set -e; mount -t tmpfs none /opt; mkdir -p /opt/cni/bin; "
            f"ln -s {PLUGIN} /opt/cni/bin/dockyard; {loopback}"
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
            assert self.proc.poll() is None, self.log_tail()
            assert time.monotonic() < deadline, "containerd did not answer within 30 s"
            time.sleep(0.1)

    @property
    def grpc_address(self) -> str:
        """Its socket as the test's process reaches it: through containerd's own root, whose
        /run/containerd is the tmpfs of its mount namespace (unix sockets are found by path)."""
        return f"/proc/{self.proc.pid}/root{self.address}"

    def log_tail(self, size: int = 2000) -> str:
        return (self.base / "containerd.log").read_text()[-size:]

    def cmd(self, *args: str, namespace: str = NAMESPACE) -> list[str]:
        """ctr against this containerd, in its mount namespace and the lab's host netns."""
        return [
            *("nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", f"--net=/run/netns/{self.lab.host}"),
            *(str(CTR), "--address", str(self.address), "--namespace", namespace, *args),
        ]

    def ctr(
        self, *args: str, input: bytes | None = None, namespace: str = NAMESPACE
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.cmd(*args, namespace=namespace), capture_output=True, input=input, timeout=60
        )

    def ctr_ok(self, *args: str, input: bytes | None = None, namespace: str = NAMESPACE) -> str:
        r = self.ctr(*args, input=input, namespace=namespace)
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


@contextlib.contextmanager
def running(lab: Lab, base: Path, sandbox_image: str | None = None) -> Iterator[Containerd]:
    """A Containerd for one test: on leaving, stopped, and nothing of it may be left running."""
    lab.dy_ok("network", "ls")  # the daemon up in the lab, started from the test's mount namespace
    c = Containerd(lab, base, sandbox_image)
    try:
        yield c
    finally:
        left = c.stop()
        assert not left, left
