"""containerd's CRI plugin, the path kubelet takes, publishes a pod's port through dockyard-cni.

`ctr run --cni` passes no port mappings (see test_cni_containerd.py); the
CRI plugin does: RunPodSandbox with a PodSandboxConfig's port_mappings makes
containerd 1.6 call CNI ADD with runtimeConfig.portMappings for every plugin
that declares the capability, as kubelet's pods get their hostPorts. The
test is kubelet here, through tests/tools/cri.py (grpcio with hand-encoded
messages: no CRI client is packaged). containerd runs as in the ctr test
(tests/containerd_lab.py), with the CRI plugin on and the busybox image,
whose command is `sleep infinity`, as its sandbox ("pause") image.

The pod's network namespace is mounted in containerd's own mount namespace
only (under its state directory), so the plugin, containerd's child, opens
it and passes the descriptor. The pod gets its address and route, its port
8080 on the lab's host answers from upstream with the client's address
kept, and StopPodSandbox (CNI DEL) and RemovePodSandbox free it all: no
attachment, publish map element, veth, process or cgroup is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from cri import SANDBOX_READY, Cri, PodConfig

from containerd_lab import (
    AVAILABLE,
    BRIDGE,
    CRI_NAMESPACE,
    GATEWAY,
    MISSING,
    Containerd,
    busybox_archive,
    running,
)
from dockyard.clients.api import Client
from lab import HOST_ADDR, PROBE, UP_ADDR, Lab, pid_alive

PAUSE = "docker.io/library/dyk-pause:latest"

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=MISSING)


@pytest.fixture
def containerd(lab: Lab, tmp_path: Path) -> Iterator[Containerd]:
    with running(lab, tmp_path / "containerd", sandbox_image=PAUSE) as c:
        yield c


@pytest.fixture
def cri(containerd: Containerd) -> Iterator[Cri]:
    """The CRI at containerd's socket, once the sandbox image is imported and the CRI plugin has it."""
    c = containerd
    c.ctr_ok(
        "image", "import", "-", input=busybox_archive(PAUSE, ("sleep", "infinity")), namespace=CRI_NAMESPACE
    )
    client = Cri(c.grpc_address)
    try:
        # The plugin learns of an import from containerd's events: without it, it would pull.
        deadline = time.monotonic() + 30
        while not client.image_present(PAUSE):
            assert time.monotonic() < deadline, f"the CRI plugin did not see {PAUSE}: {c.log_tail()}"
            time.sleep(0.1)
        yield client
    finally:
        client.close()


def _attachments(lab: Lab) -> list[dict[str, Any]]:
    return Client(str(lab.root), autostart=False).request("GET", "/dockyard/cni/attachments")["Attachments"]


def _published(lab: Lab) -> list[int]:
    """The host ports of dockyard's publish maps, as `nft -j list table inet dockyard` shows them."""
    return sorted(
        int(key["concat"][-1])
        for name in ("publish_any", "publish_addr")
        for key, _target in lab.map_elements(name)
    )


def _in_pod(pid: int, *cmd: str) -> Any:
    r = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", *cmd], capture_output=True, text=True, check=True
    )
    return json.loads(r.stdout)


def _remove_cgroup_parent(cgroup: str) -> tuple[list[Path], list[Path]]:
    """Remove a pod's cgroup parent from each hierarchy that has it (runc removed the pod's own
    cgroup in it, so it must be empty); returns where it was, and where it could not be removed."""
    parents = [
        h / cgroup.lstrip("/")
        for h in Path("/sys/fs/cgroup").iterdir()
        if not h.is_symlink() and (h / cgroup.lstrip("/")).is_dir()
    ]
    left = []
    for parent in parents:
        try:
            parent.rmdir()
        except OSError:
            left.append(parent)
    return parents, left


def test_cri_pod_sandbox_gets_its_published_port_from_dockyard(
    lab: Lab, containerd: Containerd, cri: Cri
) -> None:
    c = containerd
    # Its own cgroup parent (directly under each hierarchy's root): runc removes the pod's
    # cgroup in it, the test the parent.
    cgroup = f"/dyk-cri-{lab.host[-6:]}"
    config = PodConfig(
        "web",
        f"uid-{lab.host[-6:]}",
        "default",
        hostname="web",
        port_mappings=[(80, 8080, "")],
        cgroup_parent=cgroup,
    )
    pod, removed = "", False
    try:
        # runc makes the cgroup parent before the pod may fail to start: removed below either way.
        pod = cri.run_pod_sandbox(config)
        status = cri.pod_sandbox_status(pod)
        assert status["state"] == SANDBOX_READY, status
        pid, address = status["info"]["pid"], status["ip"]
        assert address.startswith("10.62.0."), status
        lab.pids_seen.add(pid)

        # dockyard made the attachment CRI asked for, in a namespace mounted only in
        # containerd's mount namespace: the plugin passed it open.
        (attached,) = _attachments(lab)
        assert attached["ContainerID"] == pod and attached["IfName"] == "eth0"
        assert attached["Netns"].startswith(str(c.base / "state")), attached
        assert os.stat(attached["Netns"]).st_ino != os.stat(f"/proc/{pid}/ns/net").st_ino

        # Inside the pod: the address CRI reports, and the default route via the bridge.
        addrs = _in_pod(pid, "ip", "-j", "-4", "addr", "show", "eth0")
        assert [a["local"] for link in addrs for a in link["addr_info"]] == [address]
        routes = _in_pod(pid, "ip", "-j", "route", "show", "default")
        assert [r.get("gateway") for r in routes] == [GATEWAY]
        assert BRIDGE in lab.links()
        # The port mapping reached dockyard: its host port is in the publish maps.
        assert _published(lab) == [8080]

        # A server in the pod answers on the pod's address, and on the lab host's port 8080
        # from upstream, with the client's address kept (DNAT).
        server = subprocess.Popen(
            ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, PROBE, "serve", "tcp", "80"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lab.procs.append(server)
        lab.wait_answer(lab.host, "tcp", address, 80)
        answer = lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080)
        assert answer.startswith(f"peer={UP_ADDR}:"), answer
        server.kill()
        server.wait(timeout=10)

        # StopPodSandbox ends the sandbox and calls CNI DEL; RemovePodSandbox forgets it.
        cri.stop_pod_sandbox(pod)
        cri.remove_pod_sandbox(pod)
        removed = True
        assert cri.list_pod_sandboxes() == []
        Client(str(lab.root), autostart=False).settle()
        assert _attachments(lab) == []
        assert _published(lab) == []
        assert lab.ask(lab.up, "tcp", HOST_ADDR, 8080, timeout=0.5) is None
        assert [name for name in lab.links() if name.startswith("veth")] == []
        assert not pid_alive(pid)
        assert c.ctr_ok("container", "ls", "-q", namespace=CRI_NAMESPACE).split() == []
    finally:
        if pod and not removed:  # the assertion that failed says why; its pod is not left running
            with contextlib.suppress(grpc.RpcError):
                cri.stop_pod_sandbox(pod)
                cri.remove_pod_sandbox(pod)
        parents, left = _remove_cgroup_parent(cgroup)
    assert parents and not left, f"the pod's cgroup parent {cgroup}: in {parents}, not removable in {left}"
