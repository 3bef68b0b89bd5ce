"""IPv6-only networks (issue 15; Docker 28's `network create --ipv4=false --ipv6`): the
network has no IPv4 subnet, its containers only an IPv6 address and route; they reach
out over NAT66, publish on IPv6 only, and resolve each other by AAAA; what such a
network cannot do is refused by name. In real namespaces. Isolation, --internal and
icc=false are test_networks.py's, parametrized with the ipv6only family."""

from __future__ import annotations

import json
import sys

import pytest

from lab import DIG, HOST_ADDR, HOST_ADDR6, PROBE, UP_ADDR, UP_ADDR6, Lab

SUBNET6 = "fd00:1::/64"
GATEWAY6 = "fd00:1::1"


def _v6only(lab: Lab, *extra: str, name: str = "v6only") -> dict:
    lab.dy_ok("network", "create", "--ipv4=false", "--ipv6", *extra, name)
    return json.loads(lab.dy_ok("network", "inspect", name))[0]


def _settings(lab: Lab, ref: str, network: str = "v6only") -> dict:
    return lab.inspect(ref)["NetworkSettings"]["Networks"][network]


def _in(lab: Lab, ref: str, *cmd: str) -> str:
    r = lab.dy("exec", ref, *cmd)
    assert r.returncode == 0, f"{' '.join(cmd)} failed in {ref}: {r.stderr}"
    return r.stdout


def _refused(lab: Lab, *args: str) -> str:
    """A command refused with one line and exit 125: that line."""
    r = lab.dy(*args)
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockyard: "), r.stderr
    return lines[0]


def test_create_inspect_ls_and_rm(lab: Lab) -> None:
    n = _v6only(lab, "--subnet", SUBNET6)
    assert n["EnableIPv4"] is False and n["EnableIPv6"] is True
    assert n["IPAM"]["Config"] == [{"Subnet": SUBNET6, "Gateway": GATEWAY6}]
    bridge = "dy-" + n["Id"][:12]
    assert f"{GATEWAY6}/64" in lab.in_host("ip", "-6", "-o", "addr", "show", "dev", bridge).stdout
    assert lab.in_host("ip", "-4", "-o", "addr", "show", "dev", bridge).stdout.strip() == ""
    assert "v6only" in [r.split()[1] for r in lab.dy_ok("network", "ls").splitlines()[1:]]
    # --ipv6 without a subnet: a /64 of the IPv6 default pools, still no IPv4.
    pooled = _v6only(lab, name="pooled")
    (config,) = pooled["IPAM"]["Config"]
    assert config["Subnet"].startswith("fd") and config["Subnet"].endswith("::/64")
    assert pooled["EnableIPv4"] is False
    lab.dy_ok("network", "rm", "v6only", "pooled")
    assert bridge not in lab.links()
    assert "v6only" not in [r.split()[1] for r in lab.dy_ok("network", "ls").splitlines()[1:]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ipv4=false",), "--ipv4=false needs --ipv6"),
        (
            ("--ipv4=false", "--ipv6", "--subnet", "10.9.0.0/24", "--subnet", SUBNET6),
            "IPv4 subnet 10.9.0.0/24 given but IPv4 is disabled on this network (--ipv4=false)",
        ),
        (
            ("--ipv4=false", "--ipv6", "-o", "com.docker.network.bridge.host_binding_ipv4=198.51.100.1"),
            "host_binding_ipv4 198.51.100.1 given but IPv4 is disabled",
        ),
        # An IPv6-only overlay network is made (test_overlay_ipv6.py) where there is a cluster.
        (
            ("--ipv4=false", "--ipv6", "--driver", "overlay"),
            "overlay networks need a cluster: start dockyardd with --cluster-store",
        ),
    ],
    ids=["no-family", "ipv4-subnet", "ipv4-host-binding", "overlay-without-cluster"],
)
def test_what_an_ipv6_only_network_cannot_have_is_refused(
    lab: Lab, args: tuple[str, ...], message: str
) -> None:
    before, links = lab.dy_ok("network", "ls", "-q"), lab.links()
    assert message in _refused(lab, "network", "create", *args, "bad")
    assert lab.dy_ok("network", "ls", "-q") == before and lab.links() == links


def test_a_container_gets_only_ipv6_and_inspect_shows_it_as_docker(lab: Lab) -> None:
    _v6only(lab, "--subnet", SUBNET6)
    lab.run_d("--name", "solo", "--net", "v6only", "sleep", "300")
    net = _settings(lab, "solo")
    assert (net["IPAddress"], net["IPPrefixLen"], net["Gateway"]) == ("", 0, "")
    assert (net["GlobalIPv6Address"], net["GlobalIPv6PrefixLen"], net["IPv6Gateway"]) == (
        "fd00:1::2",
        64,
        GATEWAY6,
    )
    assert net["MacAddress"].startswith("02:")
    top = lab.inspect("solo")["NetworkSettings"]
    assert (top["IPAddress"], top["IPPrefixLen"], top["Gateway"]) == ("", 0, "")
    member = next(iter(json.loads(lab.dy_ok("network", "inspect", "v6only"))[0]["Containers"].values()))
    assert (member["IPv4Address"], member["IPv6Address"]) == ("", "fd00:1::2/64")
    # What the container sees: no IPv4 address nor route on eth0, its IPv6 one and the default via the gateway.
    assert json.loads(_in(lab, "solo", "ip", "-j", "-4", "addr", "show", "dev", "eth0")) in ([], [{}])
    assert _in(lab, "solo", "ip", "-4", "route").strip() == ""
    assert "fd00:1::2/64" in _in(lab, "solo", "ip", "-6", "-o", "addr", "show", "dev", "eth0")
    assert f"default via {GATEWAY6} dev eth0" in _in(lab, "solo", "ip", "-6", "route", "show", "default")
    # The resolver is named by its IPv6 address; /etc/hosts has the container's IPv6 one.
    resolv = _in(lab, "solo", "cat", "/etc/resolv.conf")
    assert [x for x in resolv.splitlines() if x.startswith("nameserver")] == [f"nameserver {GATEWAY6}"]
    assert "fd00:1::2\t" in _in(lab, "solo", "cat", "/etc/hosts")


def test_ip_is_refused_ip6_works_run_and_connect(lab: Lab) -> None:
    _v6only(lab, "--subnet", SUBNET6)
    ps = lab.dy_ok("ps", "-aq")
    line = _refused(lab, "run", "-d", "--net", "v6only", "--ip", "10.1.0.5", "sleep", "60")
    assert line == "dockyard: --ip 10.1.0.5: network v6only has no IPv4 (it is IPv6-only); use --ip6"
    assert lab.dy_ok("ps", "-aq") == ps
    lab.run_d("--name", "fixed", "--net", "v6only", "--ip6", "fd00:1::42", "sleep", "300")
    assert _settings(lab, "fixed")["GlobalIPv6Address"] == "fd00:1::42"
    # connect likewise: --ip refused (nothing changes), --ip6 given.
    lab.run_d("--name", "late", "sleep", "300")
    line = _refused(lab, "network", "connect", "--ip", "10.1.0.6", "v6only", "late")
    assert "--ip 10.1.0.6: network v6only has no IPv4" in line
    assert list(lab.inspect("late")["NetworkSettings"]["Networks"]) == ["bridge"]
    lab.dy_ok("network", "connect", "--ip6", "fd00:1::77", "v6only", "late")
    late = _settings(lab, "late")
    assert (late["GlobalIPv6Address"], late["IPAddress"]) == ("fd00:1::77", "")
    assert "fd00:1::77/64" in _in(lab, "late", "ip", "-6", "-o", "addr", "show", "dev", "eth1")
    assert json.loads(_in(lab, "late", "ip", "-j", "-4", "addr", "show", "dev", "eth1")) in ([], [{}])
    # The IPv4 default route stays the default bridge's; no IPv4 route goes to eth1.
    assert "dev eth1" not in _in(lab, "late", "ip", "-4", "route")
    lab.dy_ok("network", "disconnect", "v6only", "late")
    # Leases are given once, and freed by rm.
    ids = [lab.run_d("--net", "v6only", "sleep", "300") for _ in range(3)]
    got = {_settings(lab, cid)["GlobalIPv6Address"] for cid in ids}
    assert len(got) == 3 and "fd00:1::42" not in got
    macs = {_settings(lab, cid)["MacAddress"] for cid in [*ids, "fixed"]}
    assert len(macs) == 4
    lab.dy_ok("rm", "-f", "fixed")
    lab.run_d("--name", "again", "--net", "v6only", "--ip6", "fd00:1::42", "sleep", "300")


def test_outbound_is_masqueraded_over_ipv6_and_ipv4_goes_nowhere(lab: Lab) -> None:
    _v6only(lab, "--subnet", SUBNET6)
    lab.spawn_in(lab.up, sys.executable, PROBE, "serve", "tcp", "7000", "--bind", UP_ADDR6)
    lab.wait_answer(lab.up, "tcp", UP_ADDR6, 7000)
    lab.spawn_in(lab.up, sys.executable, PROBE, "serve", "tcp", "7001", "--bind", UP_ADDR)
    lab.wait_answer(lab.up, "tcp", UP_ADDR, 7001)
    lab.run_d("--name", "out", "--net", "v6only", "sleep", "300")
    ask = (sys.executable, PROBE, "ask", "tcp")
    answer = _in(lab, "out", *ask, UP_ADDR6, "7000", "--timeout", "2").strip()
    assert answer.startswith(f"peer=[{HOST_ADDR6}]:"), answer  # NAT66: the host's address
    # No IPv4 at all: the IPv4 upstream (which answers the host, the control) is unreachable.
    assert lab.in_host(*ask, UP_ADDR, "7001", "--timeout", "2").returncode == 0
    r = lab.dy("exec", "out", *ask, UP_ADDR, "7001", "--timeout", "1")
    assert r.returncode != 0 and not r.stdout.strip()


def test_publishing_is_ipv6_only(lab: Lab) -> None:
    _v6only(lab, "--subnet", SUBNET6)
    cid = lab.run_d(
        "--name", "web", "--net", "v6only", "-p", "8080:80", sys.executable, PROBE, "serve", "tcp", "80"
    )
    lab.wait_answer(lab.host, "tcp", "fd00:1::2", 80)
    assert lab.dy_ok("port", "web").strip().splitlines() == ["80/tcp -> [::]:8080"]
    assert lab.inspect(cid)["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "::", "HostPort": "8080"}]
    # From the upstream over IPv6 (its own address seen: DNAT only); over IPv4 nothing answers.
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR6, 8080).startswith(f"peer=[{UP_ADDR6}]:")
    assert lab.ask(lab.up, "tcp", HOST_ADDR, 8080, timeout=1) is None
    # An IPv4 host address is refused, naming it; nothing is made.
    ps = lab.dy_ok("ps", "-aq")
    for spec, shown in (("0.0.0.0:8081:80", "0.0.0.0:8081"), (f"{HOST_ADDR}:8082:80", f"{HOST_ADDR}:8082")):
        line = _refused(lab, "run", "-d", "--net", "v6only", "-p", spec, "sleep", "60")
        assert line == f"dockyard: cannot publish on {shown}: network v6only has no IPv4", line
    assert lab.dy_ok("ps", "-aq") == ps
    # [::] and an IPv6 host address work.
    lab.run_d(
        "--name",
        "web2",
        "--net",
        "v6only",
        "-p",
        f"[{HOST_ADDR6}]:8083:80",
        sys.executable,
        PROBE,
        "serve",
        "tcp",
        "80",
    )
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR6, 8083).startswith(f"peer=[{UP_ADDR6}]:")


def test_dns_answers_aaaa_and_no_a(lab: Lab) -> None:
    _v6only(lab, "--subnet", SUBNET6)
    lab.run_d("--name", "web", "--net", "v6only", "--network-alias", "www", "sleep", "300")
    lab.run_d("--name", "asker", "--net", "v6only", "sleep", "300")
    dig = (sys.executable, "-c", DIG, GATEWAY6)
    # Asked over IPv6 on the gateway, the container's only resolver.
    assert _in(lab, "asker", *dig, "web", "AAAA").strip() == "0:fd00:1::2"
    assert _in(lab, "asker", *dig, "www", "AAAA").strip() == "0:fd00:1::2"
    assert _in(lab, "asker", *dig, "web", "A").strip() == "0:"
    # By name through the container's own resolver (resolv.conf): ping -6 finds web.
    assert "fd00:1::2" in _in(lab, "asker", "ping", "-6", "-c", "1", "-W", "2", "web")


def test_a_daemon_restart_and_a_reboot_keep_and_free_the_ipv6_only_leases(lab: Lab) -> None:
    from test_restore import _reboot  # what a reboot does to the host, as the restore tests do it

    n = _v6only(lab, "--subnet", SUBNET6)
    bridge = "dy-" + n["Id"][:12]
    lab.run_d("--name", "db", "--net", "v6only", "--ip6", "fd00:1::5", "sleep", "300")
    # A daemon started afresh reads the endpoint back without IPv4 and keeps its lease.
    lab.dy_ok("daemon", "stop")
    assert (_settings(lab, "db")["IPAddress"], _settings(lab, "db")["GlobalIPv6Address"]) == ("", "fd00:1::5")
    line = _refused(lab, "run", "-d", "--net", "v6only", "--ip6", "fd00:1::5", "sleep", "60")
    assert "fd00:1::5 is already in use" in line
    # The new daemon's resolver serves the network's IPv6 gateway again.
    assert _in(lab, "db", sys.executable, "-c", DIG, GATEWAY6, "db", "AAAA").strip() == "0:fd00:1::5"
    _reboot(lab)
    assert bridge not in lab.links()
    assert lab.inspect("db")["State"]["Status"] == "exited"
    assert f"{GATEWAY6}/64" in lab.in_host("ip", "-6", "-o", "addr", "show", "dev", bridge).stdout
    lab.run_d("--name", "db2", "--net", "v6only", "--ip6", "fd00:1::5", "sleep", "300")
    assert "fd00:1::5/64" in _in(lab, "db2", "ip", "-6", "-o", "addr", "show", "dev", "eth0")


def test_explain_covers_an_ipv6_only_network_and_graph_draws_it(lab: Lab) -> None:
    """explain's IPv6 paths and verdicts on such a network are test_explain.py's (parametrized
    with it); here: every form of the command answers, and finds the kernel as recorded."""
    n = _v6only(lab, "--subnet", SUBNET6)
    lab.run_d("--name", "solo", "--net", "v6only", "-p", "8080:80", "sleep", "300")
    lab.run_d("--name", "peer", "--net", "v6only", "sleep", "300")
    solo, peer = (_settings(lab, ref)["GlobalIPv6Address"] for ref in ("solo", "peer"))
    # graph draws what the kernel shows: the network's bridge and the container's eth0 on it,
    # with its IPv6 address, and the port published on IPv6 (the map's element) to it.
    g = json.loads(lab.dy_ok("graph", "v6only", "--format", "json"))
    names = {(node["namespace"] == "host", node["name"]) for node in g["nodes"]}
    assert (True, "dy-" + n["Id"][:12]) in names and (False, "eth0") in names, names
    eth0 = next(node for node in g["nodes"] if node["name"] == "eth0" and f"{solo}/64" in node["label"])
    (port,) = [e for e in g["edges"] if e["kind"] == "publish"]
    assert (port["a"], port["b"], port["label"]) == ("port/[::]:8080/tcp", eth0["id"], f"DNAT [{solo}]:80")
    for args in (
        ("solo",),
        ("v6only",),
        ("solo", "--port", "80"),
        ("solo", "--port", "80", "--from", "peer"),
    ):
        report = json.loads(lab.dy_ok("explain", *args, "--format", "json"))
        assert report["mismatches"] == [], (args, report["mismatches"])
    report = json.loads(lab.dy_ok("explain", "solo", "--port", "80", "--format", "json"))
    assert report["verdicts"] and all(":" in v["src"] for v in report["verdicts"]), report["verdicts"]
    # trace follows an IPv6 flow: a probe from peer to solo, bridged, past the guard's IPv6 element.
    out = lab.dy_ok("trace", "--from", peer, "--to", f"[{solo}]:80/tcp", "--probe")
    assert out.startswith(f"trace of {peer} -> [{solo}]:80/tcp\nprobe: "), out
    assert "ip6 saddr @port_addrs6" in " ".join(out.split()) and "nothing of it is left" in out, out
    line = _refused(lab, "trace", "--from", UP_ADDR, "--to", f"[{HOST_ADDR6}]:8080/tcp")
    assert "one is IPv4, the other IPv6; a flow has one family" in line, line


def test_an_ipv6_only_container_sends_no_ipv4_and_no_arp(lab: Lab) -> None:
    """Its port's guard has no IPv4 address for it: every IPv4 packet and ARP frame it
    forges (with NET_RAW) stays at its port; its own IPv6 packets (the controls) go out
    and to its neighbour."""
    from test_spoofing import Watch, _arp, _box, _host, _mac_of, _network_bridge, _send, _udp

    fam = lab.family("ipv6only")
    lab.serve("--name", "attacker", *fam.run_args)  # answered from the host: A knows the gateway's MAC
    lab.serve("--name", "victim", *fam.run_args)
    a, b = (_box(lab, n, fam.network, family="ipv6") for n in ("attacker", "victim"))
    gateway_mac = _mac_of(_host(lab), _network_bridge(lab, fam.network))
    upstream = Watch(lab, f"/run/netns/{lab.up}", "eth0", until="data=control")
    port = Watch(lab, _host(lab), a.port, until="data=control")
    neighbour = Watch(lab, b.netns, "eth0", until="data=to-b")
    _send(
        a.netns,
        _udp(a, gateway_mac, "10.99.0.1", UP_ADDR, "forged-ipv4"),
        _udp(a, gateway_mac, HOST_ADDR, UP_ADDR, "forged-host-ipv4"),
        _arp(1, a, "10.99.0.1", "ff:ff:ff:ff:ff:ff", "10.99.0.2"),
        _udp(a, b.mac, "10.99.0.1", "10.99.0.2", "forged-to-b"),
        # The controls, after the forged frames on the same path: one to B, one out.
        _udp(a, b.mac, a.ip, b.ip, "to-b"),
        _udp(a, gateway_mac, a.ip, UP_ADDR6, "control"),
    )
    sent = port.lines()
    for data in ("forged-ipv4", "forged-host-ipv4", "forged-to-b"):
        assert [line for line in sent if f"data={data}" in line] != [], (data, sent)
    assert [line for line in sent if line.startswith("arp ") and "spa=10.99.0.1" in line] != [], sent
    seen = upstream.lines()
    assert [line for line in seen if "data=" in line] == [
        next(line for line in seen if "data=control" in line)
    ]
    assert f"from={HOST_ADDR6} " in seen[-1]  # NAT66
    got = neighbour.lines()
    assert [line for line in got if "forged" in line or "spa=10.99.0.1" in line] == [], got
