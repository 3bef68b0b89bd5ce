"""The same guarantees where bridged frames skip iptables/nftables hooks.

Where the br_netfilter module is loaded (as on this machine, and wherever
Docker runs), bridge-nf-call-iptables=1 sends frames between members of one
bridge through the inet hooks; on a fresh machine without the module they
never pass there. dockyard must hold its promises both ways: these tests
turn the sysctl off in the lab's host namespace and check again.
"""

from __future__ import annotations

import sys

from lab import HOST_ADDR, PROBE, UP_ADDR, Lab


def _no_br_netfilter(lab: Lab) -> None:
    for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"):
        r = lab.in_host("sysctl", "-qw", f"net.bridge.{key}=0")
        assert r.returncode == 0, r.stderr


def _ask_from(lab: Lab, name: str, host: str, port: int = 80) -> str | None:
    r = lab.dy("exec", name, sys.executable, PROBE, "ask", "tcp", host, str(port), "--timeout", "1")
    return r.stdout.strip() if r.returncode == 0 else None


def test_members_talk_and_hairpin_works(lab: Lab) -> None:
    _no_br_netfilter(lab)
    lab.serve("--name", "srv", "-p", "8080:80")
    lab.run_d("--name", "cli", "sleep", "300")
    assert _ask_from(lab, "cli", lab.ip_of("srv")) is not None
    assert (_ask_from(lab, "cli", HOST_ADDR, 8080) or "").startswith("peer=172.17.0.1:")
    assert (_ask_from(lab, "srv", HOST_ADDR, 8080) or "").startswith("peer=172.17.0.1:")
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")


def test_icc_false_and_isolation_hold(lab: Lab) -> None:
    _no_br_netfilter(lab)
    lab.dy_ok("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", "lonely")
    lab.dy_ok("network", "create", "other")
    lab.run_d("--name", "s1", "--net", "lonely", sys.executable, PROBE, "serve", "tcp", "80")
    s1 = lab.inspect("s1")["NetworkSettings"]["Networks"]["lonely"]["IPAddress"]
    lab.wait_answer(lab.host, "tcp", s1, 80)
    lab.run_d("--name", "s2", "--net", "lonely", "sleep", "300")
    lab.run_d("--name", "o1", "--net", "other", "sleep", "300")
    assert _ask_from(lab, "s2", s1) is None
    assert _ask_from(lab, "o1", s1) is None
