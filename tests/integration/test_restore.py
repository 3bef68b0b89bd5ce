"""Restore after a reboot, and `system reset`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from lab import HOST_ADDR, PROBE, UP_ADDR, Lab, pid_alive


def _reboot(lab: Lab) -> None:
    """What a reboot does to the host: every process gone, bridges, tables and pins too; $ROOT stays."""
    pids = [int((lab.root / name).read_text()) for name in ("dockyardd.pid", "shim.pid")]
    for cid in lab.dy_ok("ps", "-q", "--no-trunc").split():
        pids.append(lab.inspect(cid)["State"]["Pid"])
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    lab.eventually(lambda: not any(pid_alive(p) for p in pids), what="processes gone")
    for link in json.loads(lab.in_host("ip", "-j", "link", "show", "type", "bridge").stdout):
        lab.in_host("ip", "link", "del", link["ifname"])
    for family in ("inet", "bridge"):
        lab.in_host("nft", "delete", "table", family, "dockyard")
    for pin in (lab.root / "netns").iterdir():
        subprocess.run(["umount", "-l", str(pin)], check=True)
    (lab.root / "dockyardd.pid").unlink()
    (lab.root / "dockyard.sock").unlink()
    (lab.root / "shim.sock").unlink()


def test_the_next_command_after_a_reboot_brings_everything_back(lab: Lab) -> None:
    lab.dy_ok(
        "network",
        "create",
        "--subnet",
        "10.90.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "app",
    )
    lab.serve("--name", "web", "-p", "8080:80")
    lab.run_d("--name", "db", "--net", "app", "--ip", "10.90.0.5", "sleep", "300")
    before = lab.nft_table()
    _reboot(lab)
    assert "dockyard0" not in lab.links()
    ps = lab.dy_ok("ps", "-a")
    assert "web" in ps and "db" in ps
    for name in ("web", "db"):
        state = lab.inspect(name)["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 137, state
    # Bridges with their addresses, the tables and the networks' elements are back.
    links = lab.links()
    assert "dockyard0" in links and [n for n in links if n.startswith("dy-")]
    assert not [n for n in links if n.startswith("veth")]
    gw = json.loads(lab.in_host("ip", "-j", "addr", "show", "dockyard0").stdout)[0]["addr_info"]
    assert [a["local"] for a in gw if a["family"] == "inet"] == ["172.17.0.1"]
    after = lab.nft_table()
    assert after is not None and before is not None
    assert lab.map_elements("publish_any") == []
    assert len(lab.map_elements("bridges")) == 2
    # The released addresses and ports can be taken again, and work.
    lab.run_d("--name", "db2", "--net", "app", "--ip", "10.90.0.5", "sleep", "300")
    lab.serve("--name", "web2", "-p", "8080:80")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    # icc=false survived the reboot: the bridge table was made again with its elements.
    lab.run_d("--name", "peer", "--net", "app", "sleep", "300")
    r = lab.dy("exec", "peer", sys.executable, PROBE, "ask", "tcp", "10.90.0.5", "22", "--timeout", "0.5")
    assert r.returncode == 1 and "timed out" in r.stderr


def test_system_reset_leaves_nothing(lab: Lab) -> None:
    lab.dy_ok("network", "create", "app")
    lab.serve("--name", "web", "-p", "8080:80")
    lab.run_d("--name", "db", "--net", "app", "sleep", "300")
    pids = [lab.inspect(n)["State"]["Pid"] for n in ("web", "db")]
    shim = int((lab.root / "shim.pid").read_text())
    r = lab.dy("system", "reset")
    assert r.returncode == 125 and "--force" in r.stderr
    out = lab.dy_ok("system", "reset", "-f")
    assert "container web: removed" in out and "network app: bridge" in out
    lab.eventually(lambda: not any(pid_alive(p) for p in (*pids, shim)), what="processes gone")
    assert not [n for n in lab.links() if n.startswith(("veth", "dy-", "dockyard"))]
    assert lab.nft_table() is None
    assert lab.in_host("nft", "list", "table", "bridge", "dockyard").returncode != 0
    assert sorted(os.listdir(lab.root)) == ["daemon.log"]
    with open("/proc/self/mountinfo") as f:
        assert str(lab.root) not in f.read()
