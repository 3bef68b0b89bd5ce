"""Living with other firewall owners, and with another dockyard root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab import DOCKYARD, HOST_ADDR, PROBE, UP_ADDR, Lab


def _upstream_server(lab: Lab, port: int = 7000) -> None:
    lab.spawn_in(lab.up, sys.executable, PROBE, "serve", "tcp", str(port), "--bind", UP_ADDR)
    lab.wait_answer(lab.up, "tcp", UP_ADDR, port)


def _our_forward_rules(lab: Lab, iptables: str) -> list[str]:
    out = lab.in_host(iptables, "-S", "FORWARD").stdout.splitlines()
    return [line for line in out if "--comment" in line and "dy:" in line]


# iptables is iptables-nft here; iptables-legacy is x_tables, which nftables cannot see.
@pytest.mark.parametrize("iptables", ["iptables", "iptables-legacy"])
def test_iptables_forward_policy_drop(lab: Lab, iptables: str) -> None:
    assert lab.in_host(iptables, "-P", "FORWARD", "DROP").returncode == 0
    _upstream_server(lab)
    lab.serve("--name", "web", "-p", "8080:80")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    out = lab.dy_ok("run", "--rm", sys.executable, PROBE, "ask", "tcp", UP_ADDR, "7000")
    assert out.startswith(f"peer={HOST_ADDR}:")
    assert len(_our_forward_rules(lab, iptables)) == 2
    lab.dy_ok("network", "create", "extra")
    assert len(_our_forward_rules(lab, iptables)) == 4
    out = lab.dy_ok("run", "--rm", "--net", "extra", sys.executable, PROBE, "ask", "tcp", UP_ADDR, "7000")
    assert out.startswith(f"peer={HOST_ADDR}:")
    # Isolation between bridges still holds: our own table still drops.
    r = lab.dy(
        "run",
        "--rm",
        "--net",
        "extra",
        sys.executable,
        PROBE,
        "ask",
        "tcp",
        lab.ip_of("web"),
        "80",
        "--timeout",
        "1",
    )
    assert r.returncode == 1
    lab.dy_ok("network", "rm", "extra")
    assert len(_our_forward_rules(lab, iptables)) == 2
    # Unneeded once the policy is back to ACCEPT (the daemon's monitor notices).
    lab.in_host(iptables, "-P", "FORWARD", "ACCEPT")
    lab.eventually(lambda: _our_forward_rules(lab, iptables) == [], timeout=10, what="rules removed")
    # And a policy set to DROP while the daemon runs is answered too.
    lab.in_host(iptables, "-P", "FORWARD", "DROP")
    lab.eventually(lambda: len(_our_forward_rules(lab, iptables)) == 2, timeout=10, what="rules added")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    lab.dy_ok("rm", "-f", "web")
    lab.dy_ok("system", "reset", "-f")
    assert _our_forward_rules(lab, iptables) == []
    assert "-P FORWARD DROP" in lab.in_host(iptables, "-S", "FORWARD").stdout


def test_tables_of_others_survive_every_command(lab: Lab) -> None:
    other = "table inet other {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 9999 drop\n\t}\n}\n"
    assert (
        subprocess.run(
            ["nsenter", f"--net=/run/netns/{lab.host}", "nft", "-f", "-"], input=other, text=True
        ).returncode
        == 0
    )
    assert (
        lab.in_host("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9998", "-j", "DROP").returncode == 0
    )
    listed = lab.in_host("nft", "list", "table", "inet", "other").stdout
    assert "tcp dport 9999 drop" in listed

    def unchanged() -> None:
        assert lab.in_host("nft", "list", "table", "inet", "other").stdout == listed
        assert "-A INPUT -p tcp -m tcp --dport 9998 -j DROP" in lab.in_host("iptables", "-S", "INPUT").stdout

    lab.dy_ok("network", "create", "net1")
    unchanged()
    cid = lab.run_d("--net", "net1", "-p", "8080:80", "sleep", "300")
    lab.dy_ok("network", "create", "net2")
    lab.dy_ok("network", "connect", "net2", cid)
    lab.dy_ok("network", "disconnect", "net2", cid)
    lab.dy_ok("stop", "-t", "0", cid)
    lab.dy_ok("rm", cid)
    lab.dy_ok("system", "gc")
    unchanged()
    lab.dy_ok("network", "prune", "-f")
    lab.dy_ok("daemon", "stop")
    lab.dy_ok("ps")
    unchanged()
    lab.dy_ok("system", "reset", "-f")
    unchanged()


def test_two_roots_in_one_host_do_not_fight(lab: Lab, tmp_path: Path) -> None:
    other_root = tmp_path / "other"

    def other(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*DOCKYARD, "--root", str(other_root), "--host-netns", lab.host, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    lab.serve("--name", "web", "-p", "8080:80")
    lab.dy_ok("network", "create", "--subnet", "10.95.0.0/24", "shared")
    try:
        r = other("ps")
        assert r.returncode == 125
        assert "dockyard0 already exists and belongs to another dockyard root" in r.stderr
        r = other("--bridge", "dockyard1", "--bip", "172.17.0.1/16", "ps")
        assert r.returncode == 125 and "overlaps a route of the host via dockyard0" in r.stderr
        r = other("--bridge", "dockyard1", "ps")
        assert r.returncode == 0, r.stderr
        subnet = json.loads(other("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]["Subnet"]
        assert subnet == "172.18.0.0/16"
        r = other("network", "create", "--subnet", "10.95.0.0/25", "mine")
        assert r.returncode == 125 and "overlaps a route of the host" in r.stderr
        r = other("network", "create", "-o", "com.docker.network.bridge.name=dockyard0", "mine")
        assert r.returncode == 125 and "belongs to another dockyard root" in r.stderr
        r = other("run", "-d", "-p", "8080:80", "sleep", "300")
        assert r.returncode == 125 and "already in use" in r.stderr
        r = other("run", "-d", "-p", "8081:80", sys.executable, PROBE, "serve", "tcp", "80")
        assert r.returncode == 0, r.stderr
        lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8081)
        # Each root's gc and reset leave the other's elements, bridges and containers alone.
        assert other("system", "gc").returncode == 0
        assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080)
        lab.dy_ok("system", "gc")
        assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8081)
        assert other("system", "reset", "-f").returncode == 0
        assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
        assert "dockyard0" in lab.links() and "dockyard1" not in lab.links()
        assert lab.inspect("web")["State"]["Running"]
    finally:
        other("system", "reset", "-f")
