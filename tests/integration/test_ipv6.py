"""IPv6 dual stack (issue 15): networks with an IPv6 subnet beside the IPv4 one,
containers with both families' addresses and default routes, leases given once,
in real namespaces."""

from __future__ import annotations

import ipaddress
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab import DIG, Lab

SUBNET6 = "2001:db8:1::/64"
# A TCP server on [::]:80 answering its name, and a client printing the answer (probe.py is IPv4's).
SERVE6 = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET6)\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('::', 80)); s.listen()\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(socket.gethostname().encode()); c.close()\n"
)
ASK6 = (
    "import socket, sys\n"
    "c = socket.create_connection((sys.argv[1], 80), timeout=2)\n"
    "print(c.recv(100).decode())\n"
)
SUBNET4 = "10.1.0.0/24"


def _net(lab: Lab, *extra: str, name: str = "dual") -> dict:
    lab.dy_ok("network", "create", *extra, name)
    return json.loads(lab.dy_ok("network", "inspect", name))[0]


def _settings(lab: Lab, ref: str, network: str) -> dict:
    return lab.inspect(ref)["NetworkSettings"]["Networks"][network]


def _in_container(lab: Lab, ref: str, *cmd: str) -> str:
    r = lab.dy("exec", ref, *cmd)
    assert r.returncode == 0, f"{' '.join(cmd)} failed in {ref}: {r.stderr}"
    return r.stdout


def test_dual_stack_network_create_and_inspect(lab: Lab) -> None:
    n = _net(
        lab,
        "--ipv6",
        "--subnet",
        SUBNET6,
        "--subnet",
        SUBNET4,
        "--gateway",
        "2001:db8:1::fe",
        "--ip-range",
        "2001:db8:1::100/120",
        "--aux-address",
        "r6=2001:db8:1::101",
        "--aux-address",
        "r4=10.1.0.5",
    )
    assert n["EnableIPv6"] is True and n["EnableIPv4"] is True
    assert n["IPAM"]["Config"] == [
        {"Subnet": SUBNET4, "Gateway": "10.1.0.1", "AuxiliaryAddresses": {"r4": "10.1.0.5"}},
        {
            "Subnet": SUBNET6,
            "Gateway": "2001:db8:1::fe",
            "IPRange": "2001:db8:1::100/120",
            "AuxiliaryAddresses": {"r6": "2001:db8:1::101"},
        },
    ]
    bridge = "dy-" + n["Id"][:12]
    addrs = lab.in_host("ip", "-6", "-o", "addr", "show", "dev", bridge).stdout
    assert "2001:db8:1::fe/64" in addrs and "nodad" in addrs
    # Sequential in the range, past the aux address; the gateway and aux never given.
    lab.run_d("--name", "first", "--net", "dual", "sleep", "60")
    lab.run_d("--name", "second", "--net", "dual", "sleep", "60")
    assert _settings(lab, "first", "dual")["GlobalIPv6Address"] == "2001:db8:1::100"
    assert _settings(lab, "second", "dual")["GlobalIPv6Address"] == "2001:db8:1::102"
    members = json.loads(lab.dy_ok("network", "inspect", "dual"))[0]["Containers"]
    assert sorted(m["IPv6Address"] for m in members.values()) == ["2001:db8:1::100/64", "2001:db8:1::102/64"]


def test_ipv6_without_a_subnet_takes_a_ula_64_of_this_daemon(lab: Lab) -> None:
    first = _net(lab, "--ipv6", name="ula1")["IPAM"]["Config"]
    second = _net(lab, "--ipv6", name="ula2")["IPAM"]["Config"]
    (v6a,) = [c for c in first if ":" in c["Subnet"]]
    (v6b,) = [c for c in second if ":" in c["Subnet"]]
    a, b = ipaddress.IPv6Network(v6a["Subnet"]), ipaddress.IPv6Network(v6b["Subnet"])
    assert a.prefixlen == b.prefixlen == 64 and a != b
    assert a.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert a.supernet(new_prefix=48) == b.supernet(new_prefix=48)  # one /48 per daemon
    assert v6a["Gateway"] == str(a.network_address + 1)
    # An IPv4 subnet too, as Docker: --ipv6 adds IPv6, it does not take IPv4 away.
    assert any(":" not in c["Subnet"] for c in first)


def test_containers_reach_each_other_over_ipv6_with_their_own_routes(lab: Lab) -> None:
    """By address and by name (AAAA). The packets pass the bridge's port guard, whose IPv6
    rules (addresses, NDP) are the firewall's part of issue 15 (branch v6fw): on this
    branch alone the guard drops every IPv6 frame of a container and this test fails."""
    _net(lab, "--ipv6", "--subnet", SUBNET6)
    lab.run_d("--name", "web", "--hostname", "web", "--net", "dual", sys.executable, "-c", SERVE6)
    lab.run_d("--name", "client", "--net", "dual", "sleep", "60")
    web6 = _settings(lab, "web", "dual")
    assert web6["GlobalIPv6Address"] == "2001:db8:1::2" and web6["GlobalIPv6PrefixLen"] == 64
    assert web6["IPv6Gateway"] == "2001:db8:1::1"
    # What the container sees: its address (no DAD), the default route via the gateway, no RA taken.
    addrs = _in_container(lab, "client", "ip", "-6", "-o", "addr", "show", "dev", "eth0")
    assert "2001:db8:1::3/64" in addrs
    routes = _in_container(lab, "client", "ip", "-6", "route", "show", "default")
    assert "via 2001:db8:1::1 dev eth0" in routes
    assert _in_container(lab, "client", "cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra").strip() == "0"
    assert _in_container(lab, "client", "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6").strip() == "0"
    _in_container(lab, "client", "ping", "-6", "-c", "1", "-W", "2", "2001:db8:1::2")
    _in_container(lab, "client", "ping", "-6", "-c", "1", "-W", "2", "2001:db8:1::1")
    out = _in_container(lab, "client", "ping", "-6", "-c", "1", "-W", "2", "web")  # by name: AAAA
    assert "2001:db8:1::2" in out
    lab.eventually(
        lambda: lab.dy("exec", "client", sys.executable, "-c", ASK6, "2001:db8:1::2").stdout.strip() == "web",
        what="web answering on [2001:db8:1::2]:80",
    )


def test_ip6_is_honoured_and_leases_are_given_once(lab: Lab) -> None:
    _net(lab, "--ipv6", "--subnet", SUBNET6)
    lab.run_d("--name", "fixed", "--net", "dual", "--ip6", "2001:db8:1::42", "sleep", "60")
    fixed = lab.inspect("fixed")["NetworkSettings"]["Networks"]["dual"]
    assert fixed["GlobalIPv6Address"] == "2001:db8:1::42"
    assert fixed["IPAMConfig"] == {"IPv6Address": "2001:db8:1::42"}
    r = lab.dy("run", "-d", "--net", "dual", "--ip6", "2001:db8:1::42", "sleep", "60")
    assert r.returncode == 125 and "2001:db8:1::42 is already in use" in r.stderr
    # Concurrent runs: every container its own address.
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda i: lab.run_d("--name", f"c{i}", "--net", "dual", "sleep", "60"), range(6)))
    got = [_settings(lab, cid, "dual")["GlobalIPv6Address"] for cid in ids]
    assert len(set(got)) == 6 and "2001:db8:1::42" not in got
    # rm frees the lease: the address can be asked for again.
    lab.dy_ok("rm", "-f", "fixed")
    lab.run_d("--name", "again", "--net", "dual", "--ip6", "2001:db8:1::42", "sleep", "60")
    assert _settings(lab, "again", "dual")["GlobalIPv6Address"] == "2001:db8:1::42"


def test_network_connect_with_ip6(lab: Lab) -> None:
    _net(lab, "--ipv6", "--subnet", SUBNET6)
    lab.run_d("--name", "late", "sleep", "60")
    lab.dy_ok("network", "connect", "--ip6", "2001:db8:1::77", "dual", "late")
    assert _settings(lab, "late", "dual")["GlobalIPv6Address"] == "2001:db8:1::77"
    assert "2001:db8:1::77/64" in _in_container(lab, "late", "ip", "-6", "-o", "addr", "show", "dev", "eth1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--subnet", SUBNET6),
            "IPv6 subnet 2001:db8:1::/64 given but IPv6 is not enabled on this network: add --ipv6",
        ),
        (
            ("--ipv6", "--subnet", "2001:db8:1::/64", "--subnet", "2001:db8:2::/64"),
            "bridge driver doesn't support multiple subnets (a second IPv6 subnet: 2001:db8:2::/64)",
        ),
        (("--ipv6", "--subnet", "2001:db8:1::1/64"), "host bits are set"),
        (("--ipv6", "--subnet", "fe80::/64"), "link-local"),
        (
            ("--ipv6", "--subnet", "2001:db8:5::/64", "--gateway", "2001:db8:6::1"),
            "not a usable address of subnet",
        ),
        (("--ipv6", "--subnet", "2001:db8:1::/64"), "overlaps network taken"),
        (("--subnet", SUBNET4, "--gateway", "2001:db8:1::1"), "no matching subnet for --gateway"),
    ],
    ids=[
        "subnet6-without-ipv6",
        "second-ipv6-subnet",
        "host-bits",
        "link-local",
        "gateway-outside",
        "overlap",
        "gateway-of-no-subnet",
    ],
)
def test_bad_ipv6_network_input_is_refused_and_changes_nothing(
    lab: Lab, args: tuple[str, ...], message: str
) -> None:
    lab.dy_ok("network", "create", "--ipv6", "--subnet", "2001:db8:1::/56", "taken")
    before = lab.dy_ok("network", "ls", "-q")
    links = lab.links()
    r = lab.dy("network", "create", *args, "bad")
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith("dockyard: ") and len(r.stderr.strip().splitlines()) == 1
    assert message in r.stderr
    assert lab.dy_ok("network", "ls", "-q") == before
    assert lab.links() == links


def test_ip6_outside_the_subnet_is_refused_and_changes_nothing(lab: Lab) -> None:
    _net(lab, "--ipv6", "--subnet", SUBNET6)
    _net(lab, name="only4")
    ps = lab.dy_ok("ps", "-aq")
    for net, ip6, message in (
        ("dual", "2001:db8:9::5", "is not a usable address of subnet 2001:db8:1::/64"),
        ("dual", "2001:db8:1::1", "is the gateway of network dual"),
        ("only4", "2001:db8:1::5", "network only4 has no IPv6"),
    ):
        r = lab.dy("run", "-d", "--net", net, "--ip6", ip6, "sleep", "60")
        assert r.returncode == 125 and message in r.stderr, r.stderr
    assert lab.dy_ok("ps", "-aq") == ps


# An upstream resolver on an IPv6 address: every AAAA question gets 2001:db8:53::99.
UPSTREAM6 = (
    "import socket, sys\n"
    "from dnslib import AAAA, QTYPE, RR, DNSRecord\n"
    "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1], 53))\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    data, peer = s.recvfrom(4096)\n"
    "    q = DNSRecord.parse(data); r = q.reply()\n"
    "    if q.q.qtype == QTYPE.AAAA:\n"
    "        r.add_answer(RR(q.q.qname, QTYPE.AAAA, rdata=AAAA('2001:db8:53::99'), ttl=60))\n"
    "    s.sendto(r.pack(), peer)\n"
)


def _dig(lab: Lab, where: str | None, server: str, name: str, qtype: str) -> str:
    cmd = (sys.executable, "-c", DIG, server, name, qtype)
    r = lab.dy("exec", where, *cmd) if where else lab.in_host(*cmd)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_dns_answers_aaaa_and_ipv6_ptr_and_listens_on_the_ipv6_gateway(lab: Lab) -> None:
    _net(lab, "--ipv6", "--subnet", SUBNET6, "--subnet", SUBNET4)
    lab.run_d("--name", "web", "--net", "dual", "--network-alias", "www", "sleep", "60")
    lab.run_d("--name", "asker", "--net", "dual", "sleep", "60")
    web6 = _settings(lab, "web", "dual")["GlobalIPv6Address"]
    # Asked over IPv4 on the gateway: AAAA by name and by alias, A unchanged, PTR of the IPv6 address.
    assert _dig(lab, "asker", "10.1.0.1", "web", "AAAA") == f"0:{web6}"
    assert _dig(lab, "asker", "10.1.0.1", "www", "AAAA") == f"0:{web6}"
    assert _dig(lab, "asker", "10.1.0.1", "web", "A") == "0:10.1.0.2"
    ptr = ipaddress.IPv6Address(web6).reverse_pointer
    assert _dig(lab, "asker", "10.1.0.1", ptr, "PTR") == "0:web."
    # A container on an IPv4-only network: AAAA of a name there is empty, not an error.
    _net(lab, "--subnet", "10.2.0.0/24", name="only4")
    lab.run_d("--name", "four", "--net", "only4", "sleep", "60")
    assert _dig(lab, "four", "10.2.0.1", "four", "AAAA") == "0:"
    # The resolver listens on the IPv6 gateway: asked there (from the host, whose source is
    # the gateway itself, one of the network's own), it answers the same.
    assert _dig(lab, None, "2001:db8:1::1", "web", "AAAA") == f"0:{web6}"
    # /etc/hosts has the container's IPv6 address too.
    hosts = _in_container(lab, "web", "cat", "/etc/hosts")
    assert f"{web6}\t" in hosts


def test_dns_forwards_to_an_ipv6_upstream(lab: Lab) -> None:
    # The outside on IPv6: a link host <-> upstream and a resolver beyond it (2001:db8::/32).
    lab.in_host("ip", "addr", "add", "2001:db8:f6::1/64", "dev", "up0", "nodad")
    lab.in_up("ip", "addr", "add", "2001:db8:f6::2/64", "dev", "eth0", "nodad")
    lab.in_up("ip", "addr", "add", "2001:db8:53::53/128", "dev", "lo")
    lab.in_host("ip", "route", "add", "2001:db8:53::/64", "via", "2001:db8:f6::2")
    server = lab.spawn_in(lab.up, sys.executable, "-c", UPSTREAM6, "2001:db8:53::53")
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    lab.root.mkdir(parents=True, exist_ok=True)
    (lab.root / "daemon.json").write_text(json.dumps({"dns": ["2001:db8:53::53"]}))
    _net(lab, "--ipv6", "--subnet", SUBNET6, "--subnet", SUBNET4)
    lab.run_d("--name", "asker", "--net", "dual", "sleep", "60")
    assert _dig(lab, "asker", "10.1.0.1", "far.example.test", "AAAA") == "0:2001:db8:53::99"


def test_dns_with_an_ipv6_server_is_written_and_forwarded_to(lab: Lab) -> None:
    """--dns 2001:db8:53::53: on the default bridge it is the resolv.conf's nameserver, as
    Docker writes it; on a user network the resolver forwards the container's questions there."""
    out = lab.dy_ok(
        "run", "--rm", "--dns", "2001:db8:53::53", "--dns", "203.0.113.53", "cat", "/etc/resolv.conf"
    )
    assert [line for line in out.splitlines() if line.startswith("nameserver")] == [
        "nameserver 2001:db8:53::53",
        "nameserver 203.0.113.53",
    ]
    lab.in_host("ip", "addr", "add", "2001:db8:f6::1/64", "dev", "up0", "nodad")
    lab.in_up("ip", "addr", "add", "2001:db8:f6::2/64", "dev", "eth0", "nodad")
    lab.in_up("ip", "addr", "add", "2001:db8:53::53/128", "dev", "lo")
    lab.in_host("ip", "route", "add", "2001:db8:53::/64", "via", "2001:db8:f6::2")
    server = lab.spawn_in(lab.up, sys.executable, "-c", UPSTREAM6, "2001:db8:53::53")
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    _net(lab, "--ipv6", "--subnet", SUBNET6, "--subnet", SUBNET4)
    lab.run_d("--name", "asker", "--net", "dual", "--dns", "2001:db8:53::53", "sleep", "60")
    assert lab.inspect("asker")["HostConfig"]["Dns"] == ["2001:db8:53::53"]
    assert _dig(lab, "asker", "10.1.0.1", "far.example.test", "AAAA") == "0:2001:db8:53::99"
    # Read back from the store by a daemon started afresh.
    lab.dy_ok("daemon", "stop")
    assert lab.inspect("asker")["HostConfig"]["Dns"] == ["2001:db8:53::53"]


@pytest.mark.parametrize("server", ["fe80::1%eth0", "2001:db8::zz", "nameserver"])
def test_a_bad_dns_server_is_refused_by_name(lab: Lab, server: str) -> None:
    before = lab.dy_ok("ps", "-aq")
    r = lab.dy("run", "-d", "--dns", server, "sleep", "60")
    assert r.returncode == 125, r
    assert r.stderr.splitlines() == [f"dockyard: invalid --dns {server!r}: expected an IPv4 or IPv6 address"]
    assert lab.dy_ok("ps", "-aq") == before


@pytest.mark.parametrize("fixed", ["2001:db8:7::/64", None], ids=["fixed-cidr-v6", "from-the-pool"])
def test_daemon_json_ipv6_on_the_default_bridge(lab: Lab, fixed: str | None) -> None:
    lab.root.mkdir(parents=True, exist_ok=True)
    settings: dict[str, object] = {"ipv6": True, "ip6tables": True}
    if fixed:
        settings["fixed-cidr-v6"] = fixed
    (lab.root / "daemon.json").write_text(json.dumps(settings))
    bridge = json.loads(lab.dy_ok("network", "inspect", "bridge"))[0]
    assert bridge["EnableIPv6"] is True
    (config6,) = [c for c in bridge["IPAM"]["Config"] if ":" in c["Subnet"]]
    subnet = ipaddress.IPv6Network(config6["Subnet"])
    if fixed:
        assert subnet == ipaddress.IPv6Network(fixed)
    else:
        assert subnet.prefixlen == 64 and subnet.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    gateway = str(subnet.network_address + 1)
    assert config6["Gateway"] == gateway
    assert f"{gateway}/64" in lab.in_host("ip", "-6", "-o", "addr", "show", "dev", "dockyard0").stdout
    lab.run_d("--name", "plain", "sleep", "60")
    top = lab.inspect("plain")["NetworkSettings"]
    assert top["GlobalIPv6Address"] == str(subnet.network_address + 2)
    assert top["GlobalIPv6PrefixLen"] == 64 and top["IPv6Gateway"] == gateway
    assert top["Networks"]["bridge"]["GlobalIPv6Address"] == top["GlobalIPv6Address"]
    routes = _in_container(lab, "plain", "ip", "-6", "route", "show", "default")
    assert f"via {gateway} dev eth0" in routes


def test_ip6tables_false_is_refused_by_name(lab: Lab) -> None:
    lab.root.mkdir(parents=True, exist_ok=True)
    (lab.root / "daemon.json").write_text(json.dumps({"ipv6": True, "ip6tables": False}))
    r = lab.dy("network", "ls")
    assert r.returncode != 0 and '"ip6tables": false is not supported' in r.stderr, r.stderr


def test_after_a_reboot_the_bridge_has_its_ipv6_gateway_and_the_leases_are_free(lab: Lab) -> None:
    from test_restore import _reboot  # what a reboot does to the host, as the restore tests do it

    n = _net(lab, "--ipv6", "--subnet", SUBNET6)
    bridge = "dy-" + n["Id"][:12]
    lab.run_d("--name", "db", "--net", "dual", "--ip6", "2001:db8:1::5", "sleep", "300")
    _reboot(lab)
    assert bridge not in lab.links()
    assert lab.inspect("db")["State"]["Status"] == "exited"
    # The next command restores the bridge with its IPv6 gateway; the exited container's
    # IPv6 address is free again and works.
    assert "2001:db8:1::1/64" in lab.in_host("ip", "-6", "-o", "addr", "show", "dev", bridge).stdout
    lab.run_d("--name", "db2", "--net", "dual", "--ip6", "2001:db8:1::5", "sleep", "300")
    assert "2001:db8:1::5/64" in _in_container(lab, "db2", "ip", "-6", "-o", "addr", "show", "dev", "eth0")
