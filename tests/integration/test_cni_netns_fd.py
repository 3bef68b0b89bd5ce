"""dockyard-cni passes the runtime's network namespace as a descriptor; the daemon never opens the path.

A runtime may mount its namespaces where the daemon cannot see them: in a
mount namespace of its own (a CI harness under `ip netns exec`, Podman
rootless, sandboxes), or name one as /proc/<pid>/ns/net of a process in a
PID namespace the daemon does not share. The plugin opens CNI_NETNS where
it runs and hands the descriptor over (SCM_RIGHTS); ADD, CHECK and DEL
work on it. A descriptor that is not a network namespace, or is the
daemon's own, is refused by identity (test_cni_dockyard.py's
test_daemon_refuses_a_netns_that_is_not_a_containers covers a plain file,
a UTS namespace and the host's netns through the plugin; here the daemon's
own check is driven directly with descriptors). A DEL whose namespace is
gone frees everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from cni_runtime import Runtime, Sandboxes, dockyard_conflist, plugin_dir

from dockyard.clients.api import Client
from dockyard.clients.cni import plugin
from lab import Lab, pid_alive

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SUBNET = "10.61.0.0/24"
BRIDGE = "cni-dyfd0"


@pytest.fixture
def rt(lab: Lab, tmp_path: Path) -> Runtime:
    return Runtime([plugin_dir(tmp_path / "cni-bin")], prefix=["nsenter", f"--net=/run/netns/{lab.host}"])


@pytest.fixture
def sandboxes(lab: Lab) -> Iterator[Sandboxes]:
    made = Sandboxes(f"dyt-fd-{lab.host[-6:]}-")
    try:
        yield made
    finally:
        Lab.made |= set(made.names)
        made.close()


def conflist(lab: Lab) -> dict[str, Any]:
    return dockyard_conflist("1.1.0", "fdnet", SUBNET, BRIDGE, lab.root)


def attachments(lab: Lab) -> list[dict[str, Any]]:
    return Client(str(lab.root), autostart=False).request("GET", "/dockyard/cni/attachments")["Attachments"]


def host_veths(lab: Lab) -> list[str]:
    return [name for name in lab.links() if name.startswith("veth")]


def daemon_pid(lab: Lab) -> int:
    return int((lab.root / "dockyardd.pid").read_text())


# The runtime's side, run in a mount and PID namespace of its own: it makes a network
# namespace bind-mounted only there, and one held by a process of its PID namespace only,
# and runs ADD, CHECK and DEL on each through the plugin. Prints what it saw, as JSON.
HARNESS = r"""
import json, os, subprocess, sys, time
sys.path.insert(0, sys.argv[2])
from cni_runtime import PluginFailed, Runtime
args = json.loads(sys.argv[1])
rt = Runtime(args["bin_dirs"], prefix=["nsenter", "--net=/run/netns/" + args["host"]])
out = {"mnt": os.readlink("/proc/self/ns/mnt"), "pid": os.readlink("/proc/self/ns/pid")}
path = args["path"]
open(path, "w").close()
subprocess.run(["unshare", "--net=" + path, "true"], check=True)
sleeper = subprocess.Popen(["unshare", "-n", "sleep", "300"])
deadline = time.monotonic() + 10
while os.readlink(f"/proc/{sleeper.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
    assert time.monotonic() < deadline, "the sleeper never got its own netns"
    time.sleep(0.01)
try:
    for name, netns in (("mounted", path), ("process", f"/proc/{sleeper.pid}/ns/net")):
        seen = out[name] = {"netns": netns}
        subprocess.run(["nsenter", "--net=" + netns, "ip", "link", "set", "lo", "up"], check=True)
        try:
            result = rt.add(args["conflist"], "ctr-" + name, netns)
        except PluginFailed as e:
            seen["add_error"] = e.error
            continue
        seen["result"] = result
        address = result["ips"][0]["address"].split("/")[0]
        r = subprocess.run(["nsenter", "--net=" + netns, "ip", "-j", "-4", "addr", "show", "eth0"],
                           capture_output=True, text=True)
        seen["addresses"] = [a["local"] for i in json.loads(r.stdout or "[]") for a in i["addr_info"]]
        r = subprocess.run(["nsenter", "--net=" + netns, "ip", "-j", "route", "show", "default"],
                           capture_output=True, text=True)
        seen["gateways"] = [x.get("gateway") for x in json.loads(r.stdout or "[]")]
        seen["ping"] = subprocess.run(
            ["nsenter", "--net=/run/netns/" + args["host"], "ping", "-c1", "-W3", address],
            capture_output=True).returncode
        try:
            rt.check(args["conflist"], "ctr-" + name, netns, prev_result=result)
            seen["check"] = "ok"
        except PluginFailed as e:
            seen["check"] = e.error
        rt.delete(args["conflist"], "ctr-" + name, netns, prev_result=result)
        seen["deleted"] = True
finally:
    sleeper.kill()
    sleeper.wait()
    subprocess.run(["umount", path])
print(json.dumps(out))
"""


def test_namespaces_the_daemon_cannot_see_are_attached_through_their_descriptor(
    lab: Lab, rt: Runtime, tmp_path: Path
) -> None:
    lab.dy_ok("network", "ls")  # the daemon up, started from this test's mount namespace
    path = tmp_path / "private-netns"
    args = {"bin_dirs": rt.bin_dirs, "host": lab.host, "path": str(path), "conflist": conflist(lab)}
    r = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc"),
            *(sys.executable, "-c", HARNESS, json.dumps(args), str(TOOLS)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    daemon = daemon_pid(lab)
    # The runtime's namespaces were out of the daemon's sight: its mount and PID namespaces differ,
    # and where it looks, the mounted namespace is an empty file (what it used to open and refuse).
    assert os.readlink(f"/proc/{daemon}/ns/mnt") != seen["mnt"]
    assert os.readlink(f"/proc/{daemon}/ns/pid") != seen["pid"]
    assert path.is_file() and path.stat().st_size == 0
    for name in ("mounted", "process"):
        one = seen[name]
        assert "add_error" not in one, one
        address = one["result"]["ips"][0]["address"].split("/")[0]
        assert one["result"]["interfaces"][2]["sandbox"] == one["netns"]  # the runtime's own name
        assert one["addresses"] == [address] and address.startswith("10.61.0.")
        assert one["gateways"] == ["10.61.0.1"]
        assert one["ping"] == 0, f"the host reaches {address} in the {name} namespace"
        assert one["check"] == "ok" and one["deleted"], one
    Client(str(lab.root), autostart=False).settle()
    assert attachments(lab) == [] and host_veths(lab) == []


def test_a_daemon_started_in_another_mount_namespace_attaches_the_runtimes(
    lab: Lab, rt: Runtime, sandboxes: Sandboxes
) -> None:
    # The daemon starts inside a private mount namespace: namespaces `ip netns add` mounts
    # later, in the runtime's, never reach it.
    r = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", *lab.dy_cmd("network", "ls")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    daemon = daemon_pid(lab)
    assert os.readlink(f"/proc/{daemon}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    netns = sandboxes.new()
    daemons_view = Path(f"/proc/{daemon}/root{netns}")
    assert daemons_view.stat().st_ino != Path(netns).stat().st_ino, "the mount is not in the daemon's view"
    result = rt.add(conflist(lab), "ctr-1", netns)
    address = result["ips"][0]["address"].split("/")[0]
    shown = subprocess.run(
        ["ip", "-n", Path(netns).name, "-j", "-4", "addr", "show", "eth0"], capture_output=True, text=True
    )
    assert address in shown.stdout
    rt.check(conflist(lab), "ctr-1", netns, prev_result=result)
    rt.delete(conflist(lab), "ctr-1", netns, prev_result=result)
    Client(str(lab.root), autostart=False).settle()
    assert attachments(lab) == [] and host_veths(lab) == []


@pytest.mark.parametrize("then", ["gone", "another namespace"])
def test_a_del_whose_namespace_is_gone_frees_everything(
    lab: Lab, rt: Runtime, sandboxes: Sandboxes, then: str
) -> None:
    """Gone, or its path now naming another namespace (a reused pid's /proc/<pid>/ns/net;
    here the daemon's own, which an ADD would refuse): the DEL frees by the records."""
    net = conflist(lab)
    net["plugins"][0]["subnet"] = "10.61.0.0/30"  # one address: the next ADD needs it freed
    first = sandboxes.new()
    ports = {"portMappings": [{"hostPort": 8461, "containerPort": 80, "protocol": "tcp"}]}
    result = rt.add(net, "ctr-1", first, runtime_config=ports)
    assert lab.map_elements("publish_any")
    sandboxes.remove(first)  # the container's namespace is gone before the DEL
    assert not os.path.exists(first)
    named = first if then == "gone" else f"/run/netns/{lab.host}"
    rt.delete(net, "ctr-1", named, prev_result=result, runtime_config=ports)
    Client(str(lab.root), autostart=False).settle()
    assert attachments(lab) == [] and host_veths(lab) == []
    assert lab.map_elements("publish_any") == []
    # Its address and host port are free again.
    second = sandboxes.new()
    again = rt.add(net, "ctr-2", second, runtime_config=ports)
    assert again["ips"][0]["address"] == result["ips"][0]["address"]
    rt.delete(net, "ctr-2", second, prev_result=again, runtime_config=ports)
    Client(str(lab.root), autostart=False).settle()


def _post_add(lab: Lab, netns_label: str, fds: list[int]) -> tuple[int, dict[str, Any]]:
    body = {
        "network": plugin.network_of(conflist(lab)["plugins"][0] | {"name": "fdnet"}),
        "containerId": "ctr-1",
        "ifname": "eth0",
        "netns": netns_label,
    }
    status, reply = plugin.post(str(lab.root / "dockyard.sock"), "/dockyard/cni/add", body, fds)
    return status, json.loads(reply)["cni"]


@pytest.mark.parametrize("kind", ["pipe", "mount namespace", "the daemon's own netns", "none"])
def test_the_daemon_refuses_by_identity_a_descriptor_that_is_not_a_containers_netns(
    lab: Lab, sandboxes: Sandboxes, kind: str
) -> None:
    lab.dy_ok("network", "ls")
    before = lab.links()
    # The label is a real container namespace: only the descriptor decides, never the path.
    label = sandboxes.new()
    r, w = os.pipe()
    opened: list[int] = []
    try:
        if kind == "pipe":
            fds, says = [r], "is not a network namespace: it is not a namespace"
        elif kind == "mount namespace":
            opened.append(os.open(f"/proc/{daemon_pid(lab)}/ns/mnt", os.O_RDONLY))
            fds, says = opened, "is not a network namespace: it is a mount namespace"
        elif kind == "the daemon's own netns":
            opened.append(os.open(f"/proc/{daemon_pid(lab)}/ns/net", os.O_RDONLY))
            fds, says = opened, "host's own network namespace"
        else:
            fds, says = [], "no descriptor of CNI_NETNS"
        status, error = _post_add(lab, label, fds)
    finally:
        for fd in (r, w, *opened):
            os.close(fd)
    assert status == 400 and error["code"] == 4 and says in error["msg"], error
    Client(str(lab.root), autostart=False).settle()
    assert lab.links() == before and attachments(lab) == []
    assert pid_alive(daemon_pid(lab))
