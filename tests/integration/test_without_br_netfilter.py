"""The same guarantees where bridged frames skip iptables/nftables hooks.

Where the br_netfilter module is loaded (as on this machine, and wherever
Docker runs), bridge-nf-call-iptables=1 sends frames between members of one
bridge through the inet hooks; on a fresh machine without the module they
never pass there. dockyard must hold its promises both ways: these tests
turn the sysctl off in the lab's host namespace and check again.
"""

from __future__ import annotations

import sys

import pytest

from lab import PROBE, Lab

FAMILIES = ["ipv4", "ipv6"]


def _no_br_netfilter(lab: Lab) -> None:
    for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"):
        r = lab.in_host("sysctl", "-qw", f"net.bridge.{key}=0")
        assert r.returncode == 0, r.stderr


def _ask_from(lab: Lab, name: str, host: str, port: int = 80) -> str | None:
    r = lab.dy("exec", name, sys.executable, PROBE, "ask", "tcp", host, str(port), "--timeout", "1")
    return r.stdout.strip() if r.returncode == 0 else None


@pytest.mark.parametrize("family", FAMILIES)
def test_members_talk_and_hairpin_works(lab: Lab, family: str) -> None:
    _no_br_netfilter(lab)
    fam = lab.family(family)
    gateway = f"peer={fam.hostport(fam.gateway, '')}"
    lab.serve("--name", "srv", *fam.run_args, "-p", "8080:80")
    lab.run_d("--name", "cli", *fam.run_args, "sleep", "300")
    assert _ask_from(lab, "cli", fam.addr(lab.inspect("srv"))) is not None
    assert (_ask_from(lab, "cli", fam.host, 8080) or "").startswith(gateway)
    assert (_ask_from(lab, "srv", fam.host, 8080) or "").startswith(gateway)
    assert lab.wait_answer(lab.up, "tcp", fam.host, 8080).startswith(f"peer={fam.hostport(fam.up, '')}")


@pytest.mark.parametrize("family", FAMILIES)
def test_icc_false_and_isolation_hold(lab: Lab, family: str) -> None:
    _no_br_netfilter(lab)
    six = ("--ipv6", "--subnet", "2001:db8:3::/64") if family == "ipv6" else ()
    lab.dy_ok("network", "create", *six, "-o", "com.docker.network.bridge.enable_icc=false", "lonely")
    six = ("--ipv6", "--subnet", "2001:db8:4::/64") if family == "ipv6" else ()
    lab.dy_ok("network", "create", *six, "other")
    lab.run_d("--name", "s1", "--net", "lonely", sys.executable, PROBE, "serve", "tcp", "80")
    net = lab.inspect("s1")["NetworkSettings"]["Networks"]["lonely"]
    s1 = net["IPAddress"] if family == "ipv4" else net["GlobalIPv6Address"]
    lab.wait_answer(lab.host, "tcp", s1, 80)
    lab.run_d("--name", "s2", "--net", "lonely", "sleep", "300")
    lab.run_d("--name", "o1", "--net", "other", "sleep", "300")
    assert _ask_from(lab, "s2", s1) is None
    assert _ask_from(lab, "o1", s1) is None
