"""Dual-stack and IPv6-only overlay networks: IPv6 across hosts, over the same VXLAN.

The etcd lab's three hosts each run a daemon (as in test_overlay.py). A
network made with --ipv6 holds its IPv6 subnet in its etcd record; each
endpoint's IPv6 address is claimed there by the same create-if-absent txn
as its IPv4 one; every peer programs a permanent neighbour entry for it
beside the IPv4 one (the VXLAN device's proxy answers the neighbour
solicitation, so no NDP multicast crosses the underlay). A network made
with --ipv4=false (Docker 28's IPv6-only) has the IPv6 part alone: the
tests of dual stack run on one too (parametrized by `ipv4`).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from cni_runtime import runtime_in_host
from test_spoofing import Watch

from dockyard.cluster import EtcdClient, StoreConfig
from dockyard.cluster.keys import Keys, Kind
from dockyard.cluster.records import Claim
from etcd_lab import EtcdLab, OverlayHost, overlay_hosts, run_at_once
from lab import PROBE, Lab, sh

Host = OverlayHost


@pytest.fixture
def hosts(etcd_lab: EtcdLab, tmp_path: Path) -> Iterator[list[Host]]:
    etcd_lab.ensure_all_running()
    made = overlay_hosts(etcd_lab, tmp_path)
    leaks: list[str] = []
    try:
        yield made
    finally:
        for h in made:
            leaks += h.empty()
    assert not leaks, f"left behind: {leaks}"


def _seen(h: Host, name: str) -> bool:
    return name in {line.split()[1] for line in h.dy_ok("network", "ls").splitlines()[1:]}


def _net6(h: Host, ref: str, network: str) -> tuple[str, str]:
    """(GlobalIPv6Address, IPv6Gateway) of a container on a network, as inspect shows them."""
    net = h.inspect(ref)["NetworkSettings"]["Networks"][network]
    return net["GlobalIPv6Address"], net["IPv6Gateway"]


def _nsenter(netns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={netns}", *cmd], capture_output=True, text=True, timeout=60)


def _claims(etcd_lab: EtcdLab, h: Host, network_id: str) -> dict[str, Claim]:
    """The network's claims in etcd (under the daemons' key prefix): address -> claim."""
    m = etcd_lab.members[0]
    client = EtcdClient(StoreConfig.parse("etcd://" + m.endpoint), dial=etcd_lab.dialer(m))
    try:
        kvs = client.prefix(Keys("/" + h.prefix + "/v1/").prefix(Kind.CLAIM, network_id)).kvs
        return {kv.key.rsplit("/", 1)[1]: Claim.decode(kv.value) for kv in kvs}
    finally:
        client.close()


# Dual stack (an IPv4 subnet beside the IPv6 one), or IPv6-only (--ipv4=false).
FAMILIES = pytest.mark.parametrize("ipv4", [True, False], ids=["dual-stack", "ipv6-only"])


def _families(ipv4: bool, subnet4: str) -> tuple[str, ...]:
    """`network create` arguments for the IPv4 part: its subnet, or none at all."""
    return ("--subnet", subnet4) if ipv4 else ("--ipv4=false",)


@FAMILIES
def test_an_overlay_network_with_ipv6_gives_ipv6_across_hosts(
    hosts: list[Host], etcd_lab: EtcdLab, ipv4: bool
) -> None:
    a, b, c = hosts
    net_id = a.dy_ok(
        "network", "create", "-d", "overlay", "--ipv6", *_families(ipv4, "10.60.0.0/24"),
        "--subnet", "fd00:60::/64", "ov6",
    ).strip()  # fmt: skip
    vx = f"vx-{net_id[:12]}"
    for h in hosts:
        h.eventually(lambda h=h: _seen(h, "ov6"), 10, f"ov6 on {h.host}")
    info = json.loads(c.dy_ok("network", "inspect", "ov6"))[0]
    assert info["EnableIPv6"] is True and info["Scope"] == "global" and info["EnableIPv4"] is ipv4
    assert {(x["Subnet"], x.get("Gateway")) for x in info["IPAM"]["Config"]} == {
        *((("10.60.0.0/24", "10.60.0.1"),) if ipv4 else ()),
        ("fd00:60::/64", "fd00:60::1"),
    }

    a.serve("--name", "srv", "--net", "ov6", proto="tcp", port=80)
    b.run_d("--name", "cli", "--net", "ov6", "sleep", "300")
    srv6, gw6 = _net6(a, "srv", "ov6")
    cli6, cli_gw6 = _net6(b, "cli", "ov6")
    assert gw6 == cli_gw6 == "fd00:60::1"
    assert srv6 != cli6
    assert all(ipaddress.IPv6Address(x) in ipaddress.IPv6Network("fd00:60::/64") for x in (srv6, cli6))
    srv_mac, cli_mac = a.mac_on("srv", "ov6"), b.mac_on("cli", "ov6")
    srv4, cli4 = a.address_on("srv", "ov6"), b.address_on("cli", "ov6")
    # Both addresses are claimed in etcd by their hosts' endpoints, beside the IPv4 ones (on an
    # IPv6-only network, alone: the containers have no IPv4 address at all).
    claims = _claims(etcd_lab, a, net_id)
    assert {srv6, cli6} <= set(claims)
    if ipv4:
        assert {srv4, cli4} <= set(claims) and claims[srv6].endpoint_id == claims[srv4].endpoint_id
    else:
        assert srv4 == cli4 == "" and set(claims) == {srv6, cli6}
        eth0 = json.loads(b.dy_ok("exec", "cli", "ip", "-j", "-4", "addr", "show", "eth0"))
        assert not [x for x in eth0 for _ in x.get("addr_info", [])], eth0
    # The remote MAC's forwarding entry points at its host's VTEP, as on any overlay network.
    for h, mac, vtep in ((b, srv_mac, a.addr), (c, srv_mac, a.addr), (a, cli_mac, b.addr)):
        h.eventually(lambda h=h, mac=mac, vtep=vtep: h.fdb(vx).get(mac) == vtep, 5, f"{mac} on {h.host}")

    # NDP's neighbour entries beside ARP's, on every peer; none for a host's own containers.
    for h, (ip6, mac) in (
        (b, (srv6, srv_mac)),
        (c, (srv6, srv_mac)),
        (a, (cli6, cli_mac)),
        (c, (cli6, cli_mac)),
    ):
        h.eventually(lambda h=h, ip6=ip6: ip6 in h.neighbours(vx), 5, f"{ip6} on {h.host}")
        assert h.neighbours(vx)[ip6] == mac
    assert srv6 not in a.neighbours(vx)
    if not ipv4:  # NDP's entries alone: no IPv4 neighbour on any host
        assert all(":" in dst for h in hosts for dst in h.neighbours(vx)), [h.neighbours(vx) for h in hosts]
    # An IPv6 entry lost (someone flushed it) is put back by the periodic reconcile, as an IPv4 one.
    # (`ip neigh del` fails unless it deleted the entry; the entry is not read back here, for the
    # periodic reconcile may already have repaired it: a race seen once on a loaded machine.)
    sh("ip", "-n", c.host, "-6", "neigh", "del", srv6, "dev", vx)
    c.eventually(lambda: c.neighbours(vx).get(srv6) == srv_mac, 10, "srv's IPv6 entry repaired on host C")

    # Across hosts over IPv6: ICMPv6 and TCP, not masqueraded (one L2 segment).
    ping = b.dy("exec", "cli", "ping", "-6", "-c", "1", "-W", "2", srv6)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    answer = b.dy_ok("exec", "cli", sys.executable, PROBE, "ask", "tcp", srv6, "80", "--timeout", "2")
    assert f"peer={cli6}" in answer or f"peer=[{cli6}]" in answer, answer
    # By name across hosts, AAAA too: host B's resolver answers from its copy of the watch's
    # cache (without the IPv6 address there, getent would map the IPv4 one: ::ffff:10.60.0.x).
    named = b.dy_ok("exec", "cli", "getent", "ahostsv6", "srv").split()
    assert srv6 in named and not [w for w in named if w.startswith("::ffff:")], named
    if not ipv4:  # and no A record for it: it has no IPv4 address
        r = b.dy("exec", "cli", "getent", "ahostsv4", "srv")
        assert r.returncode != 0 and not r.stdout.strip(), r.stdout
    # The container's neighbour entry for srv came from host B's VXLAN proxy (srv's real MAC).
    neigh = json.loads(b.dy_ok("exec", "cli", "ip", "-j", "-6", "neigh", "show", srv6))
    assert neigh and neigh[0]["lladdr"] == srv_mac

    # Anti-spoofing holds for IPv6 on an overlay too: a source address not cli's own leaves
    # cli's sandbox (the send succeeds) and never reaches srv on host A; cli's own does.
    cli_netns = b.inspect("cli")["NetworkSettings"]["SandboxKey"]
    srv_netns = a.inspect("srv")["NetworkSettings"]["SandboxKey"]
    forged = "fd00:60::99"
    r = _nsenter(cli_netns, "ip", "-6", "addr", "add", f"{forged}/128", "dev", "eth0", "nodad")
    assert r.returncode == 0, r.stderr
    watch = Watch(a, srv_netns, "eth0", until="data=control")
    send = (
        "import socket\n"
        f"for src, data in (({forged!r}, b'spoofed'), ({cli6!r}, b'control')):\n"
        "    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind((src, 0))\n"
        f"    assert s.sendto(data, ({srv6!r}, 5000)) == len(data)\n"
    )
    r = _nsenter(cli_netns, sys.executable, "-c", send)
    assert r.returncode == 0, r.stderr  # both were sent
    out = "\n".join(watch.lines())
    assert [line for line in out.splitlines() if "data=" in line] == [
        next(line for line in out.splitlines() if "data=control" in line)
    ], out
    assert f"from={cli6} " in out

    # Released on the same rules: rm frees srv's IPv6 claim and its peers' entries; another
    # host may then take the address, and while it holds it no one else can.
    a.dy_ok("rm", "-f", "srv")
    b.eventually(lambda: srv6 not in b.neighbours(vx), 5, "srv's IPv6 neighbour entry gone from host B")
    b.eventually(lambda: srv_mac not in b.fdb(vx), 5, "srv's forwarding entry gone from host B")
    c.eventually(lambda: srv6 not in _claims(etcd_lab, c, net_id), 5, "srv's IPv6 claim freed")
    c.run_d("--name", "reuse", "--net", "ov6", "--ip6", srv6, "sleep", "300")
    assert _net6(c, "reuse", "ov6")[0] == srv6
    taken = a.dy("run", "-d", "--net", "ov6", "--ip6", srv6, "sleep", "300")
    assert taken.returncode == 125 and "in use" in taken.stderr, taken.stderr
    b.eventually(lambda: b.neighbours(vx).get(srv6) == c.mac_on("reuse", "ov6"), 5, "reuse's entry on host B")

    for h, name in ((b, "cli"), (c, "reuse")):
        h.dy_ok("rm", "-f", name)
    a.dy_ok("network", "rm", "ov6")
    for h in hosts:
        h.eventually(lambda h=h: not _seen(h, "ov6"), 10, f"ov6 gone from {h.host}")


@FAMILIES
def test_published_ports_egress_and_isolation_over_ipv6_on_an_overlay_network(
    hosts: list[Host], underlay6: list[str], ipv4: bool
) -> None:
    a, _, c = hosts
    a6, _, c6 = underlay6
    a.dy_ok(
        "network", "create", "-d", "overlay", "--ipv6", *_families(ipv4, "10.65.0.0/24"),
        "--subnet", "fd00:65::/64", "pub6",
    )  # fmt: skip
    c.eventually(lambda: _seen(c, "pub6"), 10, "pub6 on host C")
    a.serve("--name", "web", "--net", "pub6", "-p", "8080:80", proto="tcp", port=80)
    # A published port on host A reaches its overlay container from host C over IPv6 (DNAT on
    # host A); over IPv4 too on a dual-stack network, never on an IPv6-only one.
    answer = a.wait_answer(c.host, "tcp", a6, 8080)
    assert answer.startswith(f"peer=[{c6}]:"), answer
    over4 = a.ask(c.host, "tcp", a.addr, 8080, timeout=1)
    assert (over4 is not None) is ipv4, over4
    # Egress through the container's own host, masqueraded there (NAT66): host C sees host A's
    # IPv6 address, not the container's.
    c.spawn_in(c.host, sys.executable, PROBE, "serve", "tcp", "7070", "--bind", c6)
    a.eventually(lambda: a.ask(c.host, "tcp", c6, 7070, timeout=0.5) is not None, 10, "host C's server")
    out = a.dy_ok("exec", "web", sys.executable, PROBE, "ask", "tcp", c6, "7070", "--timeout", "2")
    assert out.startswith(f"peer=[{a6}]:"), out
    # Isolation over IPv6: a container of an IPv6 bridge network on the same host does not reach
    # it, while it does reach the world (the attempt is a real one).
    a.dy_ok("network", "create", "--ipv6", "--ipv4=false", "--subnet", "fd00:66::/64", "local6")
    a.run_d("--name", "outsider", "--net", "local6", "sleep", "300")
    web6 = _net6(a, "web", "pub6")[0]
    r = a.dy("exec", "outsider", sys.executable, PROBE, "ask", "tcp", web6, "80", "--timeout", "1")
    assert r.returncode != 0, r.stdout
    a.dy_ok("exec", "outsider", sys.executable, PROBE, "ask", "tcp", c6, "7070", "--timeout", "2")


@FAMILIES
def test_concurrent_runs_on_two_hosts_never_get_the_same_ipv6_address(hosts: list[Host], ipv4: bool) -> None:
    a, b, c = hosts
    # --ipv6 without an IPv6 subnet: a /64 of the creating daemon's IPv6 default pool (a ULA).
    a.dy_ok("network", "create", "-d", "overlay", "--ipv6", *_families(ipv4, "10.61.0.0/24"), "race6")
    b.eventually(lambda: _seen(b, "race6"), 10, "race6 on host B")
    info = json.loads(b.dy_ok("network", "inspect", "race6"))[0]
    subnet6 = next(ipaddress.ip_network(x["Subnet"]) for x in info["IPAM"]["Config"] if ":" in x["Subnet"])
    assert subnet6.prefixlen == 64 and subnet6.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    per_host = 4
    ids = run_at_once([a, b], "race6", per_host)
    addresses = [_net6(h, cid, "race6")[0] for h in (a, b) for cid in ids[h.host]]
    assert len(addresses) == 4 * per_host and all(ipaddress.IPv6Address(x) in subnet6 for x in addresses)
    assert len(set(addresses)) == len(addresses), sorted(addresses)

    if not ipv4:  # no IPv4 address anywhere
        assert not [cid for h in (a, b) for cid in ids[h.host] if h.address_on(cid, "race6")]

    # What the overlay cannot do, or a range outside every subnet, is refused by name; nothing is made.
    for args, words in (
        (("--ipv4=false",), "--ipv4=false needs --ipv6"),
        (("--ipv6", "--ipv4=false", "--subnet", "10.62.0.0/24"), "IPv4 subnet 10.62.0.0/24"),
        (("--ipv6", "--subnet", "fd00:62::/64", "--ip-range", "fd00:99::/80"), "--ip-range fd00:99::/80"),
        (("--subnet", "fd00:63::/64"), "--ipv6"),
    ):
        r = c.dy("network", "create", "-d", "overlay", *args, "refused6")
        assert r.returncode == 125 and words in r.stderr and "\n" not in r.stderr.strip(), r.stderr
    assert not _seen(c, "refused6")


@FAMILIES
def test_dockyard_cni_attaches_to_an_overlay_network_with_ipv6(
    hosts: list[Host], tmp_path: Path, ipv4: bool
) -> None:
    a, b, _ = hosts
    net_id = a.dy_ok(
        "network", "create", "-d", "overlay", "--ipv6", *_families(ipv4, "10.64.0.0/24"),
        "--subnet", "fd00:64::/64", "pods6",
    ).strip()  # fmt: skip
    vx = f"vx-{net_id[:12]}"
    b.eventually(lambda: _seen(b, "pods6"), 10, "pods6 on host B")
    a.run_d("--name", "peer", "--net", "pods6", "sleep", "300")
    peer6 = _net6(a, "peer", "pods6")[0]

    # A runtime on host B adds a pod to the existing network by its name: both families.
    rt, pods, conflist = runtime_in_host(b.host, b.root, tmp_path / "cni-bin", "pods6")
    try:
        netns = pods.new()
        result = rt.add(conflist, "pod1", netns)
        addresses = [ipaddress.ip_interface(i["address"]) for i in result["ips"]]
        assert sorted(x.version for x in addresses) == ([4, 6] if ipv4 else [6]), result["ips"]
        pod6 = next(str(x.ip) for x in addresses if x.version == 6)
        assert ipaddress.IPv6Address(pod6) in ipaddress.IPv6Network("fd00:64::/64") and pod6 != peer6
        pod_mac = next(i["mac"] for i in result["interfaces"] if i.get("sandbox"))
        a.eventually(lambda: a.neighbours(vx).get(pod6) == pod_mac, 5, "the pod's IPv6 entry on host A")
        ping = sh(
            "ip", "netns", "exec", Path(netns).name, "ping", "-6", "-c", "1", "-W", "2", peer6, check=False
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # Its IPv6 address is the cluster's: host A cannot have it until the pod goes.
        taken = a.dy("run", "-d", "--net", "pods6", "--ip6", pod6, "sleep", "300")
        assert taken.returncode == 125 and "in use" in taken.stderr, taken.stderr
        rt.delete(conflist, "pod1", netns)
        a.eventually(lambda: pod6 not in a.neighbours(vx), 5, "the pod's IPv6 entry gone from host A")
        a.run_d("--name", "after", "--net", "pods6", "--ip6", pod6, "sleep", "300")
    finally:
        Lab.made |= set(pods.names)
        pods.close()
