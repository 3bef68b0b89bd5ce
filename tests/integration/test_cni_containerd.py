"""containerd runs a container whose network comes from dockyard-cni: a second real CNI client.

Debian's containerd 1.6 and its `ctr`, started by the test in the lab's host
namespace with its own root, state, socket and config, inside a mount
namespace of its own (tests/containerd_lab.py says how). The image is a
`docker save` archive the test builds from busybox-static, loaded with
`ctr image import`. `ctr run --cni` (in the foreground: only then does ctr
1.6 call DEL itself, when the task ends) execs dockyard-cni with
CNI_NETNS=/proc/<task pid>/ns/net; the container gets its address and
default route, and the lab's host reaches its HTTP server. ctr 1.6 cannot
pass port mappings (gocni's Setup is called without the portMappings
capability and `ctr run` has no -p); containerd's CRI plugin, the path
kubelet takes, does: test_cni_cri.py publishes a pod's port through it.
`ctr task kill` ends the task, ctr calls DEL, `--rm` removes the container:
no attachment, veth or shim is left, and the lab's leak check finds nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containerd_lab import (
    AVAILABLE,
    BRIDGE,
    GATEWAY,
    MISSING,
    NAMESPACE,
    Containerd,
    busybox_archive,
    running,
)
from dockyard.clients.api import Client
from lab import Lab, pid_alive

IMAGE = "docker.io/library/dyk-busybox:latest"

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=MISSING)


@pytest.fixture
def containerd(lab: Lab, tmp_path: Path) -> Iterator[Containerd]:
    with running(lab, tmp_path / "containerd") as c:
        yield c


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
    assert BRIDGE in lab.links()
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
