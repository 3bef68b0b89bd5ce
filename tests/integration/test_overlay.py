"""Overlay networks across hosts: dockyard daemons on the etcd lab's hosts, one network, many hosts.

Each host of the etcd lab (its own network namespace on the 192.0.2.0/24
underlay, an etcd member in it) runs a dockyard daemon of its own root,
started with --cluster-store (every member) and --cluster-advertise (the
host's underlay interface or address) from its daemon.json, under a key
prefix of the test's own. Containers on different hosts reach each other
over VXLAN; what each host's kernel holds (FDB and neighbour entries,
links) is read in that host's namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from cni_runtime import runtime_in_host

from docker_cli import DockerCli
from dockyard.cluster import EtcdClient, StoreConfig
from dockyard.cluster.keys import Keys, Kind
from dockyard.cluster.records import Claim
from etcd_lab import EtcdLab, OverlayHost, overlay_hosts, run_at_once
from lab import PROBE, REPO, Lab, sh

UNDERLAY_MTU = 1500
VXLAN_PROBE = str(REPO / "tests" / "tools" / "vxlan_probe.py")


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


def _network_links(h: Host, network_id: str) -> list[str]:
    """The links this network made on a host, by its id (never by a prefix alone)."""
    return [name for name in h.links() if name in (f"dy-{network_id[:12]}", f"vx-{network_id[:12]}")]


# An IPv4 overlay network, or an IPv6-only one (--ipv4=false): the tests that run on both.
IPV6_ONLY = pytest.mark.parametrize("ipv6_only", [False, True], ids=["ipv4", "ipv6-only"])


def _family(ipv6_only: bool, subnet4: str, subnet6: str) -> tuple[str, ...]:
    """`network create` arguments for an IPv4 network on subnet4 or an IPv6-only one on subnet6."""
    return ("--ipv6", "--ipv4=false", "--subnet", subnet6) if ipv6_only else ("--subnet", subnet4)


def _address(h: Host, ref: str, network: str, ipv6_only: bool) -> str:
    """A container's address on a network: its IPv6 one on an IPv6-only network."""
    return h.inspect(ref)["NetworkSettings"]["Networks"][network][
        "GlobalIPv6Address" if ipv6_only else "IPAddress"
    ]


def _ls(h: Host) -> dict[str, tuple[str, str, str]]:
    """network ls: name -> (short id, driver, scope)."""
    out = {}
    for line in h.dy_ok("network", "ls").splitlines()[1:]:
        short, name, driver, scope = line.split()
        out[name] = (short, driver, scope)
    return out


def test_an_overlay_network_spans_hosts_and_its_containers_talk_across_them(hosts: list[Host]) -> None:
    a, b, c = hosts
    net_id = a.dy_ok(
        "network", "create", "-d", "overlay", "--subnet", "10.50.0.0/24", "--attachable", "ov1"
    ).strip()
    vx = f"vx-{net_id[:12]}"

    # Global: seen by name and id on every daemon, SCOPE global, made once.
    for h in hosts:
        h.eventually(lambda h=h: "ov1" in _ls(h), 10, f"ov1 on {h.host}")
        assert _ls(h)["ov1"] == (net_id[:12], "overlay", "global")
        assert json.loads(h.dy_ok("network", "inspect", "ov1"))[0]["Id"] == net_id
    info = json.loads(b.dy_ok("network", "inspect", net_id))[0]
    assert (info["Scope"], info["Driver"], info["IPAM"]["Config"][0]["Subnet"]) == (
        "global",
        "overlay",
        "10.50.0.0/24",
    )
    again = c.dy("network", "create", "-d", "overlay", "ov1")
    assert again.returncode == 125 and "already exists" in again.stderr

    # The VXLAN device: the network's VNI, port 4789, the host's VTEP, no learning, MTU underlay - 50.
    details = json.loads(sh("ip", "-n", b.host, "-d", "-j", "link", "show", vx).stdout)[0]
    data = details["linkinfo"]["info_data"]
    assert data["port"] == 4789 and data["local"] == b.addr and data["learning"] is False
    assert data["id"] == int(info["Options"]["com.docker.network.driver.overlay.vxlanid_list"])
    assert details["mtu"] == UNDERLAY_MTU - 50

    a.serve("--name", "srv", "--net", "ov1", proto="tcp", port=80)
    srv_ip, srv_mac = a.address_on("srv", "ov1"), a.mac_on("srv", "ov1")
    # Host C knows srv first: an entry that arrived after `before` would be counted as cli's.
    c.eventually(lambda: c.fdb(vx).get(srv_mac) == a.addr, 5, "srv's FDB entry on host C")
    before = set(c.fdb(vx))
    started = time.monotonic()
    b.run_d("--name", "cli", "--net", "ov1", "sleep", "300")
    returned = time.monotonic()
    c.eventually(lambda: set(c.fdb(vx)) - before, 5, "cli's entry on host C")
    seen = time.monotonic()
    cli_ip, cli_mac = b.address_on("cli", "ov1"), b.mac_on("cli", "ov1")
    assert srv_ip != cli_ip
    assert set(c.fdb(vx)) - before == {cli_mac}
    print(
        f"\nrun on host B: returned after {(returned - started) * 1000:.0f} ms; its entry on host C "
        f"{'was there when it returned' if seen - returned < 0.05 else f'{(seen - returned) * 1000:.0f} ms later'}"
    )

    # Host B's kernel knows srv at host A's VTEP (programmed from the watch).
    b.eventually(lambda: b.fdb(vx).get(srv_mac) == a.addr, 5, "srv's FDB entry on host B")
    assert b.neighbours(vx).get(srv_ip) == srv_mac
    # dockyard graph draws host A as a remote VTEP of host B's VXLAN device (read from the kernel).
    drawn = json.loads(b.dy_ok("graph", "--format", "json"))
    vx_node = next(n["id"] for n in drawn["nodes"] if n.get("name") == vx)
    assert {"a": vx_node, "b": f"remote/{a.addr}"}.items() <= next(
        e for e in drawn["edges"] if e["b"] == f"remote/{a.addr}"
    ).items()

    # By name across hosts: host B's resolver answers from its copy of the watch's cache.
    named = b.dy("exec", "cli", "getent", "ahostsv4", "srv")
    assert named.returncode == 0 and named.stdout.split()[0] == srv_ip, named.stdout + named.stderr
    by_name = b.dy_ok("exec", "cli", sys.executable, PROBE, "ask", "tcp", "srv", "80", "--timeout", "2")
    assert f"peer={cli_ip}:" in by_name

    # Across hosts, by address: ICMP and TCP; the container's MTU is the overlay's.
    ping = b.dy("exec", "cli", "ping", "-c", "1", "-W", "2", srv_ip)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    answer = b.dy_ok("exec", "cli", sys.executable, PROBE, "ask", "tcp", srv_ip, "80", "--timeout", "2")
    assert f"peer={cli_ip}:" in answer  # not masqueraded: the overlay is one L2 segment
    eth0 = json.loads(b.dy_ok("exec", "cli", "ip", "-j", "link", "show", "eth0"))[0]
    assert eth0["mtu"] == UNDERLAY_MTU - 50
    # A full-size packet with DF set fits; one byte more does not.
    payload = UNDERLAY_MTU - 50 - 28
    fits = b.dy("exec", "cli", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(payload), srv_ip)
    assert fits.returncode == 0, fits.stdout + fits.stderr
    too_big = b.dy("exec", "cli", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(payload + 1), srv_ip)
    assert too_big.returncode != 0

    # Refused while any host has an endpoint on it, from a host that has none.
    refused = c.dy("network", "rm", "ov1")
    assert refused.returncode != 0 and "active endpoints" in refused.stderr, refused.stderr

    # rm frees the claim and the remote entries.
    a.dy_ok("rm", "-f", "srv")
    b.eventually(lambda: srv_mac not in b.fdb(vx), 5, "srv's FDB entry gone from host B")
    b.eventually(lambda: srv_ip not in b.neighbours(vx), 5, "srv's neighbour entry gone from host B")
    c.run_d("--name", "reuse", "--net", "ov1", "--ip", srv_ip, "sleep", "300")
    assert c.address_on("reuse", "ov1") == srv_ip
    taken = a.dy("run", "-d", "--net", "ov1", "--ip", srv_ip, "sleep", "300")
    assert taken.returncode == 125 and "in use" in taken.stderr, taken.stderr

    b.dy_ok("rm", "-f", "cli")
    c.dy_ok("rm", "-f", "reuse")
    b.dy_ok("network", "rm", "ov1")
    for h in hosts:
        h.eventually(lambda h=h: "ov1" not in _ls(h), 10, f"ov1 gone from {h.host}")
        h.eventually(lambda h=h: not _network_links(h, net_id), 5, f"ov1's links gone from {h.host}")


def test_concurrent_runs_on_two_hosts_never_get_the_same_address(hosts: list[Host]) -> None:
    a, b, _ = hosts
    a.dy_ok("network", "create", "-d", "overlay", "--subnet", "10.51.0.0/26", "race")
    b.eventually(lambda: "race" in _ls(b), 10, "race on host B")
    per_host = 6
    ids = run_at_once([a, b], "race", per_host)
    addresses = [h.address_on(cid, "race") for h in (a, b) for cid in ids[h.host]]
    assert len(addresses) == 4 * per_host
    assert len(set(addresses)) == len(addresses), sorted(addresses)


def test_vxlan_from_an_address_that_is_no_live_vtep_is_dropped(hosts: list[Host]) -> None:
    a, b, c = hosts
    net_id = a.dy_ok("network", "create", "-d", "overlay", "--subnet", "10.52.0.0/24", "guarded").strip()
    for h in (b, c):  # every daemon up: host C's VTEP is a live one
        h.eventually(lambda h=h: "guarded" in _ls(h), 10, f"guarded on {h.host}")

    def guard_vteps() -> set[str]:
        r = sh("ip", "netns", "exec", b.host, "nft", "-j", "list", "set", "ip", "dockyard_vxlan", "vteps")
        body = next(o["set"] for o in json.loads(r.stdout)["nftables"] if "set" in o)
        return set(body.get("elem", []))

    b.eventually(lambda: guard_vteps() == {a.addr, c.addr}, 10, "host B lets in hosts A and C")
    vni = json.loads(b.dy_ok("network", "inspect", "guarded"))[0]["Options"][
        "com.docker.network.driver.overlay.vxlanid_list"
    ]
    b.run_d("--name", "target", "--net", "guarded", sys.executable, "-u", VXLAN_PROBE, "listen", "9999")
    ip, mac = b.address_on("target", "guarded"), b.mac_on("target", "guarded")
    b.eventually(lambda: "listening" in b.dy_ok("logs", "target"), 10, "the listener is up")

    def inject(src: str, payload: str) -> None:
        r = c.in_host(sys.executable, VXLAN_PROBE, "inject", src, b.addr, vni, mac, ip, "9999", payload)
        assert r.returncode == 0 and int(r.stdout) > 0, r.stdout + r.stderr  # the packet was sent

    # From a live host's VTEP (host C's), a frame goes in: the forged packet is well made.
    inject(c.addr, "from-a-vtep")
    b.eventually(lambda: "got from-a-vtep" in b.dy_ok("logs", "target"), 5, "a VTEP's frame arrives")
    # From an address of the underlay that is no VTEP: dropped before it is decapsulated.
    stranger = "192.0.2.99"
    sh("ip", "-n", c.host, "addr", "add", f"{stranger}/24", "dev", "und0")
    try:
        for _ in range(3):
            inject(stranger, "from-a-stranger")
        inject(c.addr, "after-the-stranger")  # ordered behind the stranger's, on the same path
        b.eventually(lambda: "got after-the-stranger" in b.dy_ok("logs", "target"), 5, "the later frame")
        assert "from-a-stranger" not in b.dy_ok("logs", "target")
    finally:
        sh("ip", "-n", c.host, "addr", "del", f"{stranger}/24", "dev", "und0")
    guard = json.loads(
        sh("ip", "netns", "exec", b.host, "nft", "-j", "list", "table", "ip", "dockyard_vxlan").stdout
    )
    vteps = next(o["set"] for o in guard["nftables"] if "set" in o)
    assert set(vteps["elem"]) == {a.addr, c.addr}

    b.dy_ok("rm", "-f", "target")
    a.dy_ok("network", "rm", "guarded")
    for h in hosts:
        h.eventually(lambda h=h: not _network_links(h, net_id), 10, f"guarded's links gone from {h.host}")
        # The guard's table goes with the host's last overlay network.
        assert (
            sh(
                "ip", "netns", "exec", h.host, "nft", "list", "table", "ip", "dockyard_vxlan", check=False
            ).returncode
            != 0
        )


@IPV6_ONLY
def test_lost_and_stale_entries_are_repaired_and_a_dead_daemons_go_and_come_back(
    hosts: list[Host], ipv6_only: bool
) -> None:
    a, b, _ = hosts
    # IPv6-only (--ipv4=false): its records carry no IPv4 part, and a daemon back publishes them so.
    family = _family(ipv6_only, "10.53.0.0/24", "fd00:53::/64")
    net_id = a.dy_ok("network", "create", "-d", "overlay", *family, "heal").strip()
    vx = f"vx-{net_id[:12]}"
    b.eventually(lambda: "heal" in _ls(b), 10, "heal on host B")
    a.run_d("--name", "onA", "--net", "heal", "sleep", "300")
    b.run_d("--name", "onB", "--net", "heal", "sleep", "300")
    mac_a, ip_a = a.mac_on("onA", "heal"), _address(a, "onA", "heal", ipv6_only)
    b.eventually(lambda: b.neighbours(vx).get(ip_a) == mac_a, 5, "onA's neighbour entry on host B")
    b.eventually(lambda: b.fdb(vx).get(mac_a) == a.addr, 5, "onA's entry on host B")

    # The periodic reconcile: an entry lost is put back, one nobody published goes.
    stray = "02:42:0a:35:00:fe"
    sh("ip", "netns", "exec", b.host, "bridge", "fdb", "del", mac_a, "dev", vx, "dst", a.addr, "self")
    sh(
        "ip",
        "netns",
        "exec",
        b.host,
        "bridge",
        "fdb",
        "add",
        stray,
        "dev",
        vx,
        "dst",
        "192.0.2.77",
        "self",
        "permanent",
    )
    # (Each command fails unless it deleted or added the entry; they are not read back here, for the
    # periodic reconcile may already have repaired them.)
    b.eventually(
        lambda: b.fdb(vx).get(mac_a) == a.addr and stray not in b.fdb(vx), 10, "host B's FDB repaired"
    )

    # Host A's daemon dies: its lease lapses and every peer forgets its endpoints and its VTEP.
    pid = int((a.root / "dockyardd.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    b.eventually(
        lambda: mac_a not in b.fdb(vx) and ip_a not in b.neighbours(vx), 20, "onA's entries gone from host B"
    )
    # It comes back (any command starts it): what it still runs is published again.
    assert a.inspect("onA")["State"]["Running"]
    b.eventually(
        lambda: b.fdb(vx).get(mac_a) == a.addr and b.neighbours(vx).get(ip_a) == mac_a,
        15,
        "onA's entries back on host B",
    )
    b.eventually(
        lambda: (
            b.dy("exec", "onB", "ping", "-6" if ipv6_only else "-4", "-c", "1", "-W", "1", ip_a).returncode
            == 0
        ),
        10,
        "onB reaches onA again",
    )


def test_published_ports_egress_and_isolation_on_an_overlay_network(hosts: list[Host]) -> None:
    a, _, c = hosts
    a.dy_ok("network", "create", "-d", "overlay", "--subnet", "10.54.0.0/24", "pub")
    c.eventually(lambda: "pub" in _ls(c), 10, "pub on host C")
    a.serve("--name", "web", "--net", "pub", "-p", "8080:80", proto="tcp", port=80)
    # A published port on host A reaches its overlay container from host C, over the underlay.
    answer = a.wait_answer(c.host, "tcp", a.addr, 8080)
    assert f"peer={c.addr}:" in answer
    # Egress through the container's own host, masqueraded there: host C sees host A's address.
    c.spawn_in(c.host, sys.executable, PROBE, "serve", "tcp", "7070")
    a.eventually(lambda: a.ask(c.host, "tcp", c.addr, 7070, timeout=0.5) is not None, 10, "host C's server")
    out = a.dy_ok("exec", "web", sys.executable, PROBE, "ask", "tcp", c.addr, "7070", "--timeout", "2")
    assert f"peer={a.addr}:" in out
    # Isolation: a container of a bridge network on the same host does not reach it.
    a.dy_ok("network", "create", "--subnet", "10.55.0.0/24", "localnet")
    a.run_d("--name", "outsider", "--net", "localnet", "sleep", "300")
    web_ip = a.address_on("web", "pub")
    r = a.dy("exec", "outsider", sys.executable, PROBE, "ask", "tcp", web_ip, "80", "--timeout", "1")
    assert r.returncode != 0, r.stdout
    # ... while it does reach the world: the attempt above was a real one.
    a.dy_ok("exec", "outsider", sys.executable, PROBE, "ask", "tcp", c.addr, "7070", "--timeout", "2")


def test_a_claim_no_endpoint_owns_is_freed_and_a_containers_is_not(
    hosts: list[Host], etcd_lab: EtcdLab
) -> None:
    a, b, _ = hosts
    r = a.dy("daemon", "start", env={"DOCKYARD_CLAIM_GC_INTERVAL": "0.5"})
    assert r.returncode == 0, r.stderr
    net_id = a.dy_ok("network", "create", "-d", "overlay", "--subnet", "10.56.0.0/24", "leaky").strip()
    a.run_d("--name", "kept", "--net", "leaky", "sleep", "300")
    kept_ip = a.address_on("kept", "leaky")
    # A claim of host A's that no endpoint of host A owns: a release the store missed.
    client = EtcdClient(
        StoreConfig.parse("etcd://" + etcd_lab.members[0].endpoint), dial=etcd_lab.dialer(etcd_lab.members[0])
    )
    try:
        keys = Keys(f"/{a.prefix}/v1/")
        host_id = (a.root / "cluster-host-id").read_text().strip()
        leaked = keys.claim(net_id, "10.56.0.77")
        client.put(leaked, Claim(host_id, "f" * 64).encode())
        a.eventually(lambda: client.get(leaked) is None, 10, "the leaked claim freed")
        assert client.get(keys.claim(net_id, kept_ip)) is not None
    finally:
        client.close()
    b.eventually(lambda: "leaky" in _ls(b), 10, "leaky on host B")
    taken = b.dy("run", "-d", "--net", "leaky", "--ip", kept_ip, "sleep", "300")
    assert taken.returncode == 125 and "in use" in taken.stderr, taken.stderr
    b.run_d("--name", "gets77", "--net", "leaky", "--ip", "10.56.0.77", "sleep", "300")


def test_what_rm_removed_is_free_on_every_host_once_it_returns(
    hosts: list[Host], tmp_path: Path, etcd_lab: EtcdLab
) -> None:
    """An overlay address stays claimed until its link is down, which host B's reaper does after
    the container ends (held here at a gate the test opens); the link's deletion comes after. `rm
    -f`, `run --rm` and a CNI DEL return once the claim is released: a `network rm` on host A right
    after them succeeds, as with Docker."""
    a, b, _ = hosts
    client = EtcdClient(
        StoreConfig.parse("etcd://" + etcd_lab.members[0].endpoint), dial=etcd_lab.dialer(etcd_lab.members[0])
    )
    gate = b.root.parent / "reaper-gate"
    r = b.dy("daemon", "start", env={"DOCKYARD_DELAY": f"endpoint.reaping={gate}"})
    assert r.returncode == 0, r.stderr
    rt, pods, conflist = runtime_in_host(b.host, b.root, tmp_path / "cni-bin", "brief")
    try:
        net_id = a.dy_ok("network", "create", "-d", "overlay", "--subnet", "10.57.0.0/24", "brief").strip()
        claims = Keys(f"/{a.prefix}/v1/").prefix(Kind.CLAIM, net_id)
        b.eventually(lambda: "brief" in _ls(b), 10, "brief on host B")
        b.run_d("--name", "gone", "--net", "brief", "sleep", "300")
        netns = pods.new()
        rt.add(conflist, "pod1", netns)
        plugin_conf = rt.plugin_conf(conflist, conflist["plugins"][0], None, None)
        removals: dict[str, Callable[[], subprocess.Popen[bytes]]] = {
            "rm -f": lambda: subprocess.Popen(b.dy_cmd("rm", "-f", "gone"), stdout=PIPE, stderr=PIPE),
            "run --rm": lambda: subprocess.Popen(
                b.dy_cmd("run", "--rm", "--net", "brief", "true"), stdout=PIPE, stderr=PIPE
            ),
            "CNI DEL": lambda: rt.start("dockyard", rt.env("DEL", "pod1", netns, "eth0"), plugin_conf),
        }
        # What stays claimed once each has returned: pod1's address, pod1's, then nothing.
        for (what, removal), left in zip(removals.items(), (1, 1, 0), strict=True):
            gate.unlink(missing_ok=True)
            proc = removal()
            try:
                b.eventually(lambda: b.releasing() == 1, 30, f"{what}: its endpoint with the reaper")
                assert len(client.prefix(claims).kvs) == left + 1, f"{what}: its claim held"
                assert proc.poll() is None, f"{what} returned with its address still claimed"
                refused = a.dy("network", "rm", "brief")
                assert refused.returncode != 0 and "active endpoints" in refused.stderr, refused.stderr
                gate.touch()
                proc.wait(timeout=30)  # its output is a line or two: no pipe fills
            finally:
                gate.touch()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.stderr is not None
            assert proc.returncode == 0, f"{what}: {proc.stderr.read().decode(errors='replace')}"
            assert len(client.prefix(claims).kvs) == left, f"{what} returned with its address claimed"
            b.eventually(lambda: b.releasing() == 0, 30, f"{what}: its link deleted after its release")
        a.dy_ok("network", "rm", "brief")
    finally:
        client.close()
        gate.touch()
        Lab.made |= set(pods.names)
        pods.close()


def test_without_the_store_running_containers_keep_talking_and_new_overlay_work_is_refused(
    hosts: list[Host], etcd_lab: EtcdLab
) -> None:
    a, b, _ = hosts
    a.dy_ok("network", "create", "-d", "overlay", "--subnet", "10.57.0.0/24", "steady")
    b.eventually(lambda: "steady" in _ls(b), 10, "steady on host B")
    a.run_d("--name", "sa", "--net", "steady", "sleep", "300")
    b.run_d("--name", "sb", "--net", "steady", "sleep", "300")
    ip_a = a.address_on("sa", "steady")
    b.eventually(
        lambda: b.dy("exec", "sb", "ping", "-c", "1", "-W", "1", ip_a).returncode == 0, 10, "sb reaches sa"
    )

    for m in etcd_lab.members:  # the whole store goes
        etcd_lab.kill(m)
    try:
        # Once the store has not confirmed the host within its lease, new overlay work is refused.
        def refused() -> bool:
            r = b.dy("run", "-d", "--net", "steady", "sleep", "300")
            assert r.returncode != 0 or not r.stdout, "a run went through without the store"
            return r.returncode == 125 and "cluster store" in r.stderr

        b.eventually(refused, 30, "overlay work refused")
        r = a.dy("network", "create", "-d", "overlay", "later")
        assert r.returncode == 125 and "cluster store" in r.stderr, r.stderr
        # What runs keeps talking, across hosts, with what the kernels were told.
        ping = b.dy("exec", "sb", "ping", "-c", "1", "-W", "2", ip_a)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # Local work goes on.
        b.run_d("--name", "local1", "sleep", "300")
    finally:
        etcd_lab.ensure_all_running()
    # The store back: overlay work again, and the peers know each other again.
    b.eventually(
        lambda: b.dy("run", "-d", "--name", "sb2", "--net", "steady", "sleep", "300").returncode == 0,
        30,
        "run again",
    )
    ip_b2 = b.address_on("sb2", "steady")
    a.eventually(
        lambda: a.dy("exec", "sa", "ping", "-c", "1", "-W", "1", ip_b2).returncode == 0, 20, "sa reaches sb2"
    )


def test_dockyard_cni_attaches_to_an_overlay_network(hosts: list[Host], tmp_path: Path) -> None:
    a, b, _ = hosts
    net_id = a.dy_ok("network", "create", "-d", "overlay", "--subnet", "10.58.0.0/24", "podnet").strip()
    vx = f"vx-{net_id[:12]}"
    b.eventually(lambda: "podnet" in _ls(b), 10, "podnet on host B")
    a.run_d("--name", "peer", "--net", "podnet", "sleep", "300")
    peer_ip = a.address_on("peer", "podnet")

    # A runtime on host B (Podman, say) adds a pod to the existing overlay network by its name.
    rt, pods, conflist = runtime_in_host(b.host, b.root, tmp_path / "cni-bin", "podnet")
    try:
        netns = pods.new()
        result = rt.add(conflist, "pod1", netns)
        pod_ip = result["ips"][0]["address"].split("/")[0]
        pod_mac = next(i["mac"] for i in result["interfaces"] if i.get("sandbox"))
        assert ipaddress.IPv4Address(pod_ip) in ipaddress.IPv4Network("10.58.0.0/24") and pod_ip != peer_ip
        a.eventually(lambda: a.fdb(vx).get(pod_mac) == b.addr, 5, "the pod's entry on host A")
        ping = sh("ip", "netns", "exec", Path(netns).name, "ping", "-c", "1", "-W", "2", peer_ip, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # Its address is the cluster's: host A cannot have it.
        taken = a.dy("run", "-d", "--net", "podnet", "--ip", pod_ip, "sleep", "300")
        assert taken.returncode == 125 and "in use" in taken.stderr, taken.stderr
        rt.delete(conflist, "pod1", netns)
        a.eventually(lambda: pod_mac not in a.fdb(vx), 5, "the pod's entry gone from host A")
        a.run_d("--name", "after", "--net", "podnet", "--ip", pod_ip, "sleep", "300")
    finally:
        Lab.made |= set(pods.names)
        pods.close()


def test_overlay_options_the_driver_cannot_honour_are_refused(hosts: list[Host]) -> None:
    a = hosts[0]
    r = a.dy("network", "create", "-d", "overlay", "--opt", "encrypted", "secret")
    assert r.returncode == 125 and "ESP" in r.stderr, r.stderr
    r = a.dy("network", "create", "-d", "overlay", "--opt", "com.docker.network.bridge.name=x", "odd")
    assert r.returncode == 125 and "not supported by the overlay driver" in r.stderr, r.stderr
    assert "secret" not in _ls(a) and "odd" not in _ls(a)
    # An MTU asked for is every host's.
    a.dy_ok("network", "create", "-d", "overlay", "--opt", "com.docker.network.driver.mtu=1400", "small")
    b = hosts[1]
    b.eventually(lambda: "small" in _ls(b), 10, "small on host B")
    b.run_d("--name", "mtu1", "--net", "small", "sleep", "300")
    eth0 = json.loads(b.dy_ok("exec", "mtu1", "ip", "-j", "link", "show", "eth0"))[0]
    assert eth0["mtu"] == 1400
    b.dy_ok("rm", "-f", "mtu1")
    a.dy_ok("network", "rm", "small")


def test_without_a_cluster_store_overlay_is_refused_and_nothing_changes(lab: Lab) -> None:
    r = lab.dy("network", "create", "-d", "overlay", "ov")
    assert r.returncode == 125 and "--cluster-store" in r.stderr, r.stderr
    assert "ov" not in lab.dy_ok("network", "ls")


@IPV6_ONLY
def test_a_running_container_connects_to_an_overlay_network_and_leaves_it(
    hosts: list[Host], ipv6_only: bool
) -> None:
    a, b, c = hosts
    family = _family(ipv6_only, "10.59.0.0/24", "fd00:59::/64")
    ip_flag, v = ("--ip6", "-6") if ipv6_only else ("--ip", "-4")
    net_id = a.dy_ok("network", "create", "-d", "overlay", *family, "joinme").strip()
    vx = f"vx-{net_id[:12]}"
    for h in (b, c):
        h.eventually(lambda h=h: "joinme" in _ls(h), 10, f"joinme on {h.host}")
    a.run_d("--name", "srv", "--net", "joinme", "sleep", "300")
    srv_ip, srv_mac = _address(a, "srv", "joinme", ipv6_only), a.mac_on("srv", "joinme")
    # A container of the default bridge on host B joins the overlay network while it runs.
    b.run_d("--name", "late", "sleep", "300")
    # Host C knows srv first: an entry that arrived after c_before would be counted as late's.
    c.eventually(lambda: c.fdb(vx).get(srv_mac) == a.addr, 5, "srv's FDB entry on host C")
    c_before = set(c.fdb(vx))
    b.dy_ok("network", "connect", "joinme", "late")
    late_ip, late_mac = _address(b, "late", "joinme", ipv6_only), b.mac_on("late", "joinme")
    assert ipaddress.ip_address(late_ip) in ipaddress.ip_network(family[-1]) and late_ip != srv_ip
    assert b.inspect("late")["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]  # it keeps its bridge
    # Published to the other hosts: their kernels know it at host B's VTEP.
    a.eventually(lambda: a.fdb(vx).get(late_mac) == b.addr, 5, "late's FDB entry on host A")
    c.eventually(lambda: set(c.fdb(vx)) - c_before == {late_mac}, 5, "late's FDB entry on host C")
    ping = b.dy("exec", "late", "ping", v, "-c", "1", "-W", "2", srv_ip)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    named = b.dy("exec", "late", "getent", "ahostsv6" if ipv6_only else "ahostsv4", "srv")
    assert named.returncode == 0 and named.stdout.split()[0] == srv_ip, named.stdout + named.stderr
    # The address is the cluster's while it is attached.
    taken = c.dy("run", "-d", "--net", "joinme", ip_flag, late_ip, "sleep", "300")
    assert taken.returncode == 125 and "in use" in taken.stderr, taken.stderr

    b.dy_ok("network", "disconnect", "joinme", "late")
    assert "joinme" not in b.inspect("late")["NetworkSettings"]["Networks"]
    links = json.loads(b.dy_ok("exec", "late", "ip", "-j", "link", "show"))
    assert [link["ifname"] for link in links] == ["lo", "eth0"], links  # its overlay interface is gone
    a.eventually(lambda: late_mac not in a.fdb(vx), 5, "late's FDB entry gone from host A")
    a.eventually(lambda: late_ip not in a.neighbours(vx), 5, "late's neighbour entry gone from host A")
    c.eventually(lambda: late_mac not in c.fdb(vx), 5, "late's FDB entry gone from host C")
    # Its address is free for any host again, and the network can go once its last endpoint has.
    c.run_d("--name", "heir", "--net", "joinme", ip_flag, late_ip, "sleep", "300")
    refused = b.dy("network", "rm", "joinme")
    assert refused.returncode != 0 and "active endpoints" in refused.stderr, refused.stderr
    # Connected again (a second time on the same container), then removed with the container.
    b.dy_ok("network", "connect", "joinme", "late")
    again_mac = b.mac_on("late", "joinme")
    a.eventually(lambda: a.fdb(vx).get(again_mac) == b.addr, 5, "late's entry on host A again")
    b.dy_ok("rm", "-f", "late")
    a.eventually(lambda: again_mac not in a.fdb(vx), 5, "late's entry gone with the container")
    a.dy_ok("rm", "-f", "srv")
    c.dy_ok("rm", "-f", "heir")
    b.dy_ok("network", "rm", "joinme")
    for h in hosts:
        h.eventually(lambda h=h: not _network_links(h, net_id), 10, f"joinme's links gone from {h.host}")


@IPV6_ONLY
def test_an_internal_overlay_network_spans_hosts_and_reaches_nothing_else(
    hosts: list[Host], underlay6: list[str], ipv6_only: bool
) -> None:
    a, b, c = hosts
    # The hosts' addresses the containers try: IPv6 ones (the underlay's, given for the test) from
    # an IPv6-only network.
    b_addr, c_addr = (underlay6[1], underlay6[2]) if ipv6_only else (b.addr, c.addr)
    v = "-6" if ipv6_only else "-4"
    sealed = _family(ipv6_only, "10.60.0.0/24", "fd00:60::/64")
    a.dy_ok("network", "create", "-d", "overlay", "--internal", *sealed, "sealed")
    b.eventually(lambda: "sealed" in _ls(b), 10, "sealed on host B")
    assert json.loads(b.dy_ok("network", "inspect", "sealed"))[0]["Internal"] is True
    a.run_d("--name", "ia", "--net", "sealed", "sleep", "300")
    b.run_d("--name", "ib", "--net", "sealed", "sleep", "300")
    ip_a = _address(a, "ia", "sealed", ipv6_only)
    # Across hosts, inside the network: it works.
    b.eventually(
        lambda: b.dy("exec", "ib", "ping", v, "-c", "1", "-W", "1", ip_a).returncode == 0, 10, "ib reaches ia"
    )
    # No way out: no default route, and a server on host C's underlay address is not reached ...
    routes = b.dy_ok("exec", "ib", "ip", v, "route")
    assert "default" not in routes, routes
    c.spawn_in(c.host, sys.executable, PROBE, "serve", "tcp", "7071")
    b.eventually(lambda: b.ask(b.host, "tcp", c_addr, 7071, timeout=0.5) is not None, 10, "host C's server")
    out = b.dy("exec", "ib", sys.executable, PROBE, "ask", "tcp", c_addr, "7071", "--timeout", "1")
    assert out.returncode != 0, out.stdout
    # ... nor is host B's own address on the underlay, through the network's gateway.
    b.spawn_in(b.host, sys.executable, PROBE, "serve", "tcp", "7072")
    b.eventually(lambda: b.ask(b.host, "tcp", b_addr, 7072, timeout=0.5) is not None, 10, "host B's server")
    out = b.dy("exec", "ib", sys.executable, PROBE, "ask", "tcp", b_addr, "7072", "--timeout", "1")
    assert out.returncode != 0, out.stdout
    # The attempts were real ones: a container of an ordinary overlay network on host B reaches both.
    a.dy_ok("network", "create", "-d", "overlay", *_family(ipv6_only, "10.61.0.0/24", "fd00:61::/64"), "open")
    b.eventually(lambda: "open" in _ls(b), 10, "open on host B")
    b.run_d("--name", "ob", "--net", "open", "sleep", "300")
    for addr, port in ((c_addr, "7071"), (b_addr, "7072")):
        b.dy_ok("exec", "ob", sys.executable, PROBE, "ask", "tcp", addr, port, "--timeout", "2")


def test_an_overlay_network_of_several_subnets_per_family_gives_each_host_every_gateway(
    hosts: list[Host], tmp_path: Path
) -> None:
    """Docker's overlay driver takes several subnets of a family: an address comes from the
    first one with room, with that subnet's gateway; every host has every gateway. Made through
    the Engine API with IPAM.Config in order, as docker-py and Compose send it (Docker's CLI
    sends its subnets in a Go map's order, which no user chooses: checked apart, below), and
    inspected with Docker's CLI."""
    a, b, c = hosts
    wanted = [
        {"Subnet": "10.61.0.0/30", "Gateway": "10.61.0.1"},
        {
            "Subnet": "10.62.0.0/24",
            "Gateway": "10.62.0.254",
            "IPRange": "10.62.0.0/28",
            "AuxiliaryAddresses": {"resv": "10.62.0.1"},
        },
        {"Subnet": "fd00:61::/64", "Gateway": "fd00:61::1"},
        {"Subnet": "fd00:62::/64", "Gateway": "fd00:62::1"},
    ]
    body = {"Name": "multi", "Driver": "overlay", "EnableIPv6": True, "IPAM": {"Config": wanted}}
    status, answer = DockerCli.for_lab(a, tmp_path / "a").api("POST", "/networks/create", body)
    assert status == 201, answer
    net_id = json.loads(answer)["Id"]
    for h in (b, c):
        h.eventually(lambda h=h: "multi" in _ls(h), 10, f"multi on {h.host}")
    docker_b = DockerCli.for_lab(b, tmp_path / "b")
    assert json.loads(docker_b.ok("network", "inspect", "multi"))[0]["IPAM"]["Config"] == wanted
    bridge = f"dy-{net_id[:12]}"
    for h in hosts:
        shown = json.loads(sh("ip", "-n", h.host, "-j", "addr", "show", "dev", bridge).stdout)[0]
        have = {f"{x['local']}/{x['prefixlen']}" for x in shown["addr_info"] if x["scope"] == "global"}
        assert have == {"10.61.0.1/30", "10.62.0.254/24", "fd00:61::1/64", "fd00:62::1/64"}, (h.host, have)

    # The /30 holds one container; the next comes from the second subnet's range, where neither
    # the gateway (.254) nor the aux address (.1) is given, each with its own subnet's prefix and
    # gateway.
    a.run_d("--name", "one", "--net", "multi", "sleep", "300")
    b.run_d("--name", "two", "--net", "multi", "sleep", "300")
    one = a.inspect("one")["NetworkSettings"]["Networks"]["multi"]
    two = b.inspect("two")["NetworkSettings"]["Networks"]["multi"]
    assert (one["IPAddress"], one["IPPrefixLen"], one["Gateway"]) == ("10.61.0.2", 30, "10.61.0.1")
    assert (two["IPAddress"], two["IPPrefixLen"], two["Gateway"]) == ("10.62.0.2", 24, "10.62.0.254")
    assert one["GlobalIPv6Address"].startswith("fd00:61::") and two["GlobalIPv6Address"].startswith(
        "fd00:61::"
    )
    route = json.loads(b.dy_ok("exec", "two", "ip", "-j", "-4", "route", "show", "default"))
    assert route[0]["gateway"] == "10.62.0.254", route

    # Each host knows the other's container first (from its watch): never a race with the ping.
    vx = f"vx-{net_id[:12]}"
    one_mac, two_mac = a.mac_on("one", "multi"), b.mac_on("two", "multi")
    b.eventually(lambda: b.fdb(vx).get(one_mac) == a.addr, 5, "one's FDB entry on host B")
    a.eventually(lambda: a.fdb(vx).get(two_mac) == b.addr, 5, "two's FDB entry on host A")
    # From one subnet to the other, across hosts: through each host's gateway; and by name,
    # through the resolver on two's own gateway.
    ping = b.dy("exec", "two", "ping", "-c", "1", "-W", "2", "10.61.0.2")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    back = a.dy("exec", "one", "ping", "-c", "1", "-W", "2", "10.62.0.2")
    assert back.returncode == 0, back.stdout + back.stderr
    assert "nameserver 10.62.0.254" in b.dy_ok("exec", "two", "cat", "/etc/resolv.conf")
    named = b.dy("exec", "two", "getent", "ahostsv4", "one")
    assert named.returncode == 0 and named.stdout.split()[0] == "10.61.0.2", named.stdout + named.stderr

    # --ip anywhere in any subnet (outside its range too, as Docker); never a gateway or an aux
    # address, never outside every subnet.
    c.run_d("--name", "three", "--net", "multi", "--ip", "10.62.0.200", "sleep", "300")
    assert c.address_on("three", "multi") == "10.62.0.200"
    gateway = c.dy("run", "-d", "--net", "multi", "--ip", "10.62.0.254", "sleep", "300")
    assert gateway.returncode == 125 and "gateway" in gateway.stderr, gateway.stderr
    aux = c.dy("run", "-d", "--net", "multi", "--ip", "10.62.0.1", "sleep", "300")
    assert aux.returncode == 125 and "reserved" in aux.stderr, aux.stderr
    outside = c.dy("run", "-d", "--net", "multi", "--ip", "10.63.0.5", "sleep", "300")
    assert outside.returncode == 125 and "10.61.0.0/30, 10.62.0.0/24" in outside.stderr, outside.stderr
    # Another network may not overlap a later subnet either, on any host.
    overlap = c.dy("network", "create", "-d", "overlay", "--subnet", "10.62.0.0/16", "over")
    assert overlap.returncode == 125 and "overlaps" in overlap.stderr, overlap.stderr
    # A later subnet overlaps none of the network's own.
    alone = c.dy(
        "network", "create", "-d", "overlay", "--subnet", "10.64.0.0/24", "--subnet", "10.64.0.0/25", "twice"
    )
    assert alone.returncode == 125 and "overlaps subnet 10.64.0.0/24" in alone.stderr, alone.stderr
    assert "over" not in _ls(c) and "twice" not in _ls(c)

    # Docker's CLI makes one too, each --gateway, --ip-range and --aux-address with its subnet.
    docker_b.ok(
        "network", "create", "-d", "overlay", "--subnet", "10.65.0.0/24", "--subnet", "10.66.0.0/24",
        "--gateway", "10.66.0.254", "--ip-range", "10.66.0.0/28", "--aux-address", "resv=10.66.0.1", "bycli",
    )  # fmt: skip
    made = json.loads(docker_b.ok("network", "inspect", "bycli"))[0]["IPAM"]["Config"]
    assert sorted(made, key=lambda x: x["Subnet"]) == [
        {"Subnet": "10.65.0.0/24", "Gateway": "10.65.0.1"},
        {
            "Subnet": "10.66.0.0/24",
            "Gateway": "10.66.0.254",
            "IPRange": "10.66.0.0/28",
            "AuxiliaryAddresses": {"resv": "10.66.0.1"},
        },
    ]
    docker_b.ok("network", "rm", "bycli")

    for h, name in ((a, "one"), (b, "two"), (c, "three")):
        h.dy_ok("rm", "-f", name)
    a.dy_ok("network", "rm", "multi")
    for h in hosts:
        h.eventually(lambda h=h: not _network_links(h, net_id), 10, f"multi's links gone from {h.host}")
