"""User-defined networks: commands, IPAM, and isolation, in real namespaces."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest

from lab import HOST_ADDR, HOST_ADDR6, PROBE, UP_ADDR, UP_ADDR6, Lab

# ipv6only: the IPv6 twin on an IPv6-only network (--ipv4=false, Docker 28).
FAMILIES = ["ipv4", "ipv6", "ipv6only"]
_subnets6 = itertools.count(10)

UPSTREAM_DNS_TOOL = str(Path(__file__).resolve().parents[1] / "tools" / "upstream_dns.py")
UPSTREAM_DNS = "203.0.113.53"
EXT_NAME, EXT_ADDR = "ext.example.test", "203.0.113.99"


def _net_ip(lab: Lab, ref: str, network: str, family: str = "ipv4") -> str:
    net = lab.inspect(ref)["NetworkSettings"]["Networks"][network]
    return net["IPAddress"] if family == "ipv4" else net["GlobalIPv6Address"]


def _create(lab: Lab, family: str, *args: str) -> None:
    """network create, with an IPv6 subnet of its own beside the IPv4 one for the IPv6 twin
    (instead of it for the IPv6-only one)."""
    v6 = ("--ipv6", "--subnet", f"2001:db8:{next(_subnets6)}::/64") if family != "ipv4" else ()
    only = ("--ipv4=false",) if family == "ipv6only" else ()
    lab.dy_ok("network", "create", *only, *v6, *args)


def _outside(family: str) -> tuple[str, str]:
    """(the upstream's address, how a masqueraded peer from the host shows) for a family."""
    return (UP_ADDR, f"peer={HOST_ADDR}:") if family == "ipv4" else (UP_ADDR6, f"peer=[{HOST_ADDR6}]:")


def _serve_on(lab: Lab, name: str, network: str, *extra: str, family: str = "ipv4") -> str:
    lab.run_d("--name", name, "--net", network, *extra, sys.executable, PROBE, "serve", "tcp", "80")
    ip = _net_ip(lab, name, network, family)
    lab.wait_answer(lab.host, "tcp", ip, 80)
    return ip


def _ask_from(lab: Lab, name: str, host: str, port: int = 80) -> str | None:
    r = lab.dy("exec", name, sys.executable, PROBE, "ask", "tcp", host, str(port), "--timeout", "1")
    return r.stdout.strip() if r.returncode == 0 else None


def _upstream_server(lab: Lab, port: int = 7000, family: str = "ipv4") -> None:
    up, _ = _outside(family)
    lab.spawn_in(lab.up, sys.executable, PROBE, "serve", "tcp", str(port), "--bind", up)
    lab.wait_answer(lab.up, "tcp", up, port)


def _upstream_dns(lab: Lab) -> None:
    """A resolver in the upstream namespace, on UPSTREAM_DNS, that knows EXT_NAME only."""
    lab.in_up("ip", "addr", "add", f"{UPSTREAM_DNS}/24", "dev", "lo")
    server = lab.spawn_in(lab.up, sys.executable, UPSTREAM_DNS_TOOL, UPSTREAM_DNS, f"{EXT_NAME}={EXT_ADDR}")
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"


def _hosts(lab: Lab, container: str, name: str) -> tuple[int, list[str]]:
    """getent in the container: (exit status, addresses), all A records for a name."""
    r = lab.dy("exec", container, "getent", "ahostsv4", name)
    return r.returncode, sorted({line.split()[0] for line in r.stdout.splitlines() if line.strip()})


# One UDP query from inside a container: prints the answer's rcode, fails when none comes.
ASK_DNS = (
    "import socket, sys\n"
    "from dnslib import DNSRecord\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(1)\n"
    "s.sendto(DNSRecord.question(sys.argv[2]).pack(), (sys.argv[1], 53))\n"
    "print('rcode', DNSRecord.parse(s.recv(4096)).header.rcode)\n"
)


def _nameservers(resolv_conf: str) -> list[str]:
    return [line for line in resolv_conf.splitlines() if line.startswith("nameserver")]


def test_create_inspect_ls_and_rm(lab: Lab) -> None:
    nid = lab.dy_ok(
        "network",
        "create",
        "--subnet",
        "10.30.0.0/24",
        "--gateway",
        "10.30.0.254",
        "--ip-range",
        "10.30.0.128/25",
        "--aux-address",
        "router=10.30.0.129",
        "--label",
        "team=blue",
        "-o",
        "com.docker.network.bridge.name=br-blue",
        "blue",
    ).strip()
    assert len(nid) == 64
    info = json.loads(lab.dy_ok("network", "inspect", "blue"))[0]
    assert (
        info["Name"] == "blue"
        and info["Id"] == nid
        and info["Driver"] == "bridge"
        and info["Internal"] is False
    )
    assert info["IPAM"]["Config"] == [
        {
            "Subnet": "10.30.0.0/24",
            "Gateway": "10.30.0.254",
            "IPRange": "10.30.0.128/25",
            "AuxiliaryAddresses": {"router": "10.30.0.129"},
        }
    ]
    assert info["Labels"] == {"team": "blue"} and info["Options"] == {
        "com.docker.network.bridge.name": "br-blue"
    }
    assert "br-blue" in lab.links()
    # Addresses come from the range; gateway and aux addresses are never handed out.
    cid = lab.run_d("--name", "b1", "--net", "blue", "sleep", "300")
    assert _net_ip(lab, "b1", "blue") == "10.30.0.128"
    lab.run_d("--name", "b2", "--net", "blue", "sleep", "300")
    assert _net_ip(lab, "b2", "blue") == "10.30.0.130"
    info = json.loads(lab.dy_ok("network", "inspect", "blue"))[0]
    assert (
        info["Containers"][cid]["Name"] == "b1" and info["Containers"][cid]["IPv4Address"] == "10.30.0.128/24"
    )
    # The MAC inspect shows is the one the container's interface has.
    eth0 = json.loads(lab.dy_ok("exec", "b1", "ip", "-j", "link", "show", "eth0"))[0]
    assert info["Containers"][cid]["MacAddress"] == eth0["address"]

    def listed(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        return sorted(line.split()[1] for line in lab.dy_ok("network", "ls", *args).splitlines()[1:])

    assert listed("name=blu") == ["blue"]
    assert listed("label=team=blue") == ["blue"] and listed("label=team=red") == []
    assert listed("type=custom") == ["blue"] and listed("type=builtin") == ["bridge", "host", "none"]
    assert listed("driver=bridge") == ["blue", "bridge"]
    assert listed("driver=bridge", "type=builtin") == ["bridge"]
    assert listed("scope=local") == ["blue", "bridge", "host", "none"]
    r = lab.dy("network", "ls", "--filter", "color=red")
    assert r.returncode == 125 and "invalid filter 'color'" in r.stderr
    assert nid[:12] in lab.dy_ok("network", "ls", "-q").split()
    r = lab.dy("network", "rm", "blue")
    assert r.returncode == 125 and "has active endpoints (b1, b2)" in r.stderr
    lab.dy_ok("rm", "-f", "b1", "b2")
    lab.eventually(lambda: lab.dy("network", "rm", "blue").returncode == 0, what="network removed")
    assert "br-blue" not in lab.links()
    r = lab.dy("network", "rm", "bridge")
    assert r.returncode == 125 and "pre-defined network" in r.stderr


def test_prune_removes_unused_networks(lab: Lab) -> None:
    lab.dy_ok("network", "create", "used")
    lab.dy_ok("network", "create", "unused")
    lab.run_d("--net", "used", "sleep", "300")
    out = lab.dy_ok("network", "prune", "-f")
    assert out.split() == ["Deleted", "Networks:", "unused"]
    names = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
    assert sorted(names) == ["bridge", "host", "none", "used"]


def test_subnets_come_from_dockers_pools_skipping_what_is_taken(lab: Lab) -> None:
    lab.in_host("ip", "route", "add", "172.19.0.0/16", "via", UP_ADDR)
    for name in ("p1", "p2"):
        lab.dy_ok("network", "create", name)
    subnets = [
        json.loads(lab.dy_ok("network", "inspect", n))[0]["IPAM"]["Config"][0]["Subnet"] for n in ("p1", "p2")
    ]
    # 172.17 is the default bridge's, 172.19 a host route's.
    assert subnets == ["172.18.0.0/16", "172.20.0.0/16"]


def test_daemon_json_pools_replace_the_defaults_for_the_default_bridge_too(lab: Lab) -> None:
    lab.root.mkdir(parents=True)
    (lab.root / "daemon.json").write_text(
        json.dumps({"default-address-pools": [{"base": "10.123.0.0/16", "size": 24}]})
    )
    lab.dy_ok("network", "create", "pooled")
    # As Docker: without --bip, the default bridge takes the pools' first subnet; user networks the next.
    bridge = json.loads(lab.dy_ok("network", "inspect", "bridge"))[0]["IPAM"]["Config"][0]
    assert bridge == {"Subnet": "10.123.0.0/24", "Gateway": "10.123.0.1"}
    addrs = json.loads(lab.in_host("ip", "-j", "-4", "addr", "show", "dockyard0").stdout)[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs] == [("10.123.0.1", 24)]
    info = json.loads(lab.dy_ok("network", "inspect", "pooled"))[0]
    assert info["IPAM"]["Config"][0]["Subnet"] == "10.123.1.0/24"
    lab.run_d("--name", "pool0", "sleep", "300")
    assert lab.ip_of("pool0") == "10.123.0.2"


def test_explicit_bridge_driver(lab: Lab) -> None:
    for flag, name in (("-d", "short"), ("--driver", "long")):
        lab.dy_ok("network", "create", flag, "bridge", name)
        assert json.loads(lab.dy_ok("network", "inspect", name))[0]["Driver"] == "bridge"
    # A user network like any other: DNS by name included.
    lab.run_d("--name", "ons1", "--net", "short", "sleep", "300")
    lab.run_d("--name", "ons2", "--net", "short", "sleep", "300")
    assert _hosts(lab, "ons2", "ons1") == (0, [_net_ip(lab, "ons1", "short")])


def test_inspect_and_rm_take_several_names(lab: Lab) -> None:
    for name in ("n1", "n2", "n3"):
        lab.dy_ok("network", "create", name)
    both = json.loads(lab.dy_ok("network", "inspect", "n2", "n1"))
    assert [n["Name"] for n in both] == ["n2", "n1"]
    # A missing one is reported; the others are still shown, and the exit status says it failed.
    r = lab.dy("network", "inspect", "n1", "nosuch", "n3")
    assert r.returncode == 125 and "nosuch" in r.stderr
    assert [n["Name"] for n in json.loads(r.stdout)] == ["n1", "n3"]
    r = lab.dy("network", "rm", "n1", "nosuch", "n2")
    assert r.returncode == 125 and "nosuch" in r.stderr and r.stdout.split() == ["n1", "n2"]
    names = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
    assert sorted(names) == ["bridge", "host", "n3", "none"]


def test_a_name_is_taken_by_a_name_never_by_an_id_prefix(lab: Lab) -> None:
    # Ids are random hex: a short hex name is, now and then, the prefix of a network's id
    # (the host network's id began with "d6" once, and creating "d6" was refused).
    def inspect(ref: str) -> dict:
        return json.loads(lab.dy_ok("network", "inspect", ref))[0]

    host_id = inspect("host")["Id"]
    others = [inspect(n)["Id"] for n in ("bridge", "none")]
    # The shortest prefix of the host network's id that no other id begins with (two built-in
    # networks' ids share their first two digits 1 time in 128).
    prefix = next(host_id[:n] for n in range(2, 64) if not any(o.startswith(host_id[:n]) for o in others))
    assert inspect(prefix)["Name"] == "host"
    made = lab.dy_ok("network", "create", prefix).strip()
    # The name now names the new network; the id, whole, still names the host network.
    assert inspect(prefix)["Id"] == made
    assert inspect(host_id)["Name"] == "host"
    r = lab.dy("network", "create", prefix)
    assert r.returncode == 125 and f"network with name {prefix} already exists" in r.stderr


def test_overlapping_subnets_are_refused_naming_the_conflict(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.40.0.0/16", "first")
    r = lab.dy("network", "create", "--subnet", "10.40.5.0/24", "second")
    assert r.returncode == 125 and "overlaps network first (10.40.0.0/16)" in r.stderr
    r = lab.dy("network", "create", "--subnet", "198.51.100.0/25", "third")
    assert r.returncode == 125 and "overlaps a route of the host via up0" in r.stderr
    r = lab.dy("network", "create", "--subnet", "172.17.0.0/24", "fourth")
    assert r.returncode == 125 and "overlaps network bridge" in r.stderr
    names = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
    assert sorted(names) == ["bridge", "first", "host", "none"]


def test_bad_network_input(lab: Lab) -> None:
    for args, message in (
        (("--subnet", "10.0.0.0/33", "bad1"), "invalid --subnet"),
        (("--subnet", "10.50.0.0/24", "--gateway", "10.51.0.1", "bad2"), "not a usable address of subnet"),
        (("--subnet", "10.50.0.0/24", "--ip-range", "10.60.0.0/25", "bad3"), "not within subnet"),
        (("-o", "com.docker.network.bridge.enable_icc=maybe", "bad4"), "use true or false"),
        (("-o", "com.docker.network.bridge.name=a-very-long-bridge-name", "bad5"), "1 to 15 bytes"),
        (("-d", "overlay", "bad6"), "overlay networks need a cluster"),
        (("-d", "ipvlan", "bad7"), "not supported"),
        (("bad/name",), "invalid network name"),
        (
            ("--subnet", "10.50.0.0/24", "--subnet", "10.52.0.0/24", "bad8"),
            "bridge driver doesn't support multiple subnets (a second IPv4 subnet: 10.52.0.0/24)",
        ),
    ):
        r = lab.dy("network", "create", *args)
        assert r.returncode == 125 and message in r.stderr, (args, r.stderr)
    lab.dy_ok("network", "create", "dup")
    r = lab.dy("network", "create", "dup")
    assert r.returncode == 125 and "already exists" in r.stderr
    names = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
    assert sorted(names) == ["bridge", "dup", "host", "none"]


def test_pool_exhaustion_is_a_clear_error(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.70.0.0/30", "tiny")
    lab.run_d("--net", "tiny", "sleep", "300")
    r = lab.dy("run", "--rm", "--net", "tiny", "true")
    assert r.returncode == 125 and "no available IPv4 addresses" in r.stderr
    assert len(lab.dy_ok("ps", "-aq").split()) == 1


def test_a_released_address_is_reused_only_after_the_rest(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.71.0.0/29", "small")
    first = lab.run_d("--net", "small", "sleep", "300")
    assert _net_ip(lab, first, "small") == "10.71.0.2"
    lab.dy_ok("rm", "-f", first)
    lab.dy_ok("system", "gc")
    second = lab.run_d("--net", "small", "sleep", "300")
    assert _net_ip(lab, second, "small") == "10.71.0.3"
    pinned = lab.run_d("--net", "small", "--ip", "10.71.0.2", "sleep", "300")
    assert _net_ip(lab, pinned, "small") == "10.71.0.2"


@pytest.mark.parametrize("family", FAMILIES)
def test_two_networks_are_isolated_but_both_reach_out(lab: Lab, family: str) -> None:
    _create(lab, family, "left")
    _create(lab, family, "right")
    left_ip = _serve_on(lab, "ll", "left", family=family)
    right_ip = _serve_on(lab, "rr", "right", family=family)
    # Each reaches its own network's members (the control), not the other network's.
    lab.run_d("--name", "l2", "--net", "left", "sleep", "300")
    assert _ask_from(lab, "l2", left_ip) is not None
    assert _ask_from(lab, "ll", right_ip) is None
    assert _ask_from(lab, "rr", left_ip) is None
    _upstream_server(lab, family=family)
    up, masqueraded = _outside(family)
    for name in ("ll", "rr"):
        answer = _ask_from(lab, name, up, 7000)
        assert answer is not None and answer.startswith(masqueraded), answer


def test_the_default_bridge_and_a_user_network_are_isolated_both_ways(lab: Lab) -> None:
    lab.dy_ok("network", "create", "userside")
    user_ip = _serve_on(lab, "usr", "userside")
    lab.serve("--name", "dflt")
    default_ip = lab.ip_of("dflt")
    # Each reaches its own network's gateway side (the probe answers the host) but not the other.
    assert _ask_from(lab, "dflt", user_ip) is None
    assert _ask_from(lab, "usr", default_ip) is None
    _upstream_server(lab)
    for name in ("dflt", "usr"):
        answer = _ask_from(lab, name, UP_ADDR, 7000)
        assert answer is not None and answer.startswith(f"peer={HOST_ADDR}:")
    # Members of the same network still reach each other, on both sides.
    lab.run_d("--name", "usr2", "--net", "userside", "sleep", "300")
    lab.run_d("--name", "dflt2", "sleep", "300")
    assert _ask_from(lab, "usr2", user_ip) is not None
    assert _ask_from(lab, "dflt2", default_ip) is not None


def test_a_container_on_both_networks_reaches_both(lab: Lab) -> None:
    lab.dy_ok("network", "create", "front")
    lab.dy_ok("network", "create", "back")
    front_ip = _serve_on(lab, "fr", "front")
    back_ip = _serve_on(lab, "bk", "back")
    lab.run_d("--name", "both", "--net", "front", "sleep", "300")
    lab.dy_ok("network", "connect", "back", "both")
    links = lab.dy_ok("exec", "both", "ls", "/sys/class/net").split()
    assert links == ["eth0", "eth1", "lo"]
    assert _ask_from(lab, "both", front_ip) is not None
    assert _ask_from(lab, "both", back_ip) is not None
    assert _ask_from(lab, "fr", back_ip) is None
    lab.dy_ok("network", "disconnect", "back", "both")
    lab.eventually(
        lambda: lab.dy_ok("exec", "both", "ls", "/sys/class/net").split() == ["eth0", "lo"], what="eth1 gone"
    )
    assert _ask_from(lab, "both", back_ip) is None
    r = lab.dy("network", "disconnect", "back", "both")
    assert r.returncode == 125 and "not connected" in r.stderr
    # -f does not make a non-member's disconnect succeed: Docker's error.
    r = lab.dy("network", "disconnect", "-f", "back", "both")
    assert r.returncode == 125 and "not connected" in r.stderr


def test_connect_with_ip_and_alias_and_refusals(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.72.0.0/24", "extra")
    lab.run_d("--name", "joiner", "sleep", "300")
    lab.dy_ok("network", "connect", "--ip", "10.72.0.50", "--alias", "db", "extra", "joiner")
    net = lab.inspect("joiner")["NetworkSettings"]["Networks"]["extra"]
    assert net["IPAddress"] == "10.72.0.50" and net["Aliases"] == ["db"]
    r = lab.dy("network", "connect", "extra", "joiner")
    assert r.returncode == 125 and "already connected" in r.stderr
    lab.run_d("--name", "hosty", "--net", "host", "sleep", "300")
    r = lab.dy("network", "connect", "extra", "hosty")
    assert r.returncode == 125 and "cannot be connected" in r.stderr


@pytest.mark.parametrize("family", FAMILIES)
def test_internal_network(lab: Lab, family: str) -> None:
    _create(lab, family, "--internal", "vault")
    info = json.loads(lab.dy_ok("network", "inspect", "vault"))[0]
    assert info["Internal"] is True
    ip = _serve_on(lab, "v1", "vault", family=family)
    # NET_ADMIN: below, the container adds a route by hand (not in Docker's default set).
    lab.run_d("--name", "v2", "--net", "vault", "--cap-add", "NET_ADMIN", "sleep", "300")
    assert _ask_from(lab, "v2", ip) is not None
    six = ("-6",) if family != "ipv4" else ()
    routes = json.loads(lab.dy_ok("exec", "v2", "ip", "-j", *six, "route"))
    assert not [r for r in routes if r["dst"] == "default"]
    _upstream_server(lab, family=family)
    up, _ = _outside(family)
    assert _ask_from(lab, "v2", up, 7000) is None
    # Even with a route added by hand, nothing leaves.
    gateway = next(
        c["Gateway"] for c in info["IPAM"]["Config"] if (":" in c["Gateway"]) == (family != "ipv4")
    )
    lab.dy_ok("exec", "v2", "ip", *six, "route", "add", "default", "via", gateway)
    assert _ask_from(lab, "v2", up, 7000) is None
    r = lab.dy("run", "--rm", "--net", "vault", "-p", "8080:80", "true")
    assert r.returncode == 125 and "internal" in r.stderr


@pytest.mark.parametrize("family", FAMILIES)
def test_icc_false_isolates_members_but_not_the_outside(lab: Lab, family: str) -> None:
    _create(lab, family, "-o", "com.docker.network.bridge.enable_icc=false", "lonely")
    ip = _serve_on(lab, "s1", "lonely", "-p", "8080:80", family=family)
    lab.run_d("--name", "s2", "--net", "lonely", "sleep", "300")
    assert _ask_from(lab, "s2", ip) is None
    _upstream_server(lab, family=family)
    up, masqueraded = _outside(family)
    host = HOST_ADDR if family == "ipv4" else HOST_ADDR6
    assert (_ask_from(lab, "s2", up, 7000) or "").startswith(masqueraded)
    upstream_peer = f"peer={UP_ADDR}:" if family == "ipv4" else f"peer=[{UP_ADDR6}]:"
    assert lab.wait_answer(lab.up, "tcp", host, 8080).startswith(upstream_peer)


def test_masquerade_off_keeps_the_container_address(lab: Lab) -> None:
    lab.dy_ok(
        "network",
        "create",
        "--subnet",
        "10.73.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "plain",
    )
    lab.run_d("--name", "pl", "--net", "plain", "sleep", "300")
    lab.in_up("ip", "route", "add", "10.73.0.0/24", "via", HOST_ADDR)
    _upstream_server(lab)
    answer = _ask_from(lab, "pl", UP_ADDR, 7000)
    assert answer is not None and answer.startswith(f"peer={_net_ip(lab, 'pl', 'plain')}:")


def test_host_binding_and_mtu_options(lab: Lab) -> None:
    lab.in_host("ip", "addr", "add", "198.51.100.3/24", "dev", "up0")
    lab.dy_ok(
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=198.51.100.3",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "bound",
    )
    _serve_on(lab, "hb", "bound", "-p", "8080:80")
    assert lab.wait_answer(lab.up, "tcp", "198.51.100.3", 8080)
    assert lab.ask(lab.up, "tcp", HOST_ADDR, 8080, timeout=1) is None
    assert lab.dy_ok("port", "hb").strip() == "80/tcp -> 198.51.100.3:8080"
    mtu = json.loads(lab.dy_ok("exec", "hb", "ip", "-j", "link", "show", "eth0"))[0]["mtu"]
    assert mtu == 1400


def test_default_bridge_has_no_dns_by_name(lab: Lab) -> None:
    _upstream_dns(lab)
    lab.run_d("--name", "plainbridge", "--dns", UPSTREAM_DNS, "sleep", "300")
    lab.run_d("--name", "asking", "--dns", UPSTREAM_DNS, "sleep", "300")
    resolv = lab.dy_ok("exec", "asking", "cat", "/etc/resolv.conf")
    assert _nameservers(resolv) == [f"nameserver {UPSTREAM_DNS}"]  # no resolver of dockyard's
    # DNS works there (the upstream answers) but knows no container by name.
    assert _hosts(lab, "asking", EXT_NAME) == (0, [EXT_ADDR])
    assert _hosts(lab, "asking", "plainbridge")[0] == 2
    assert _hosts(lab, "asking", lab.inspect("plainbridge")["Id"][:12])[0] == 2
    # And nothing answers DNS on the default bridge's gateway, even when asked directly.
    gateway = lab.inspect("asking")["NetworkSettings"]["Gateway"]
    r = lab.dy("exec", "asking", sys.executable, "-c", ASK_DNS, gateway, "plainbridge")
    assert r.returncode != 0 and "rcode" not in r.stdout


def test_run_dns_options_on_the_default_bridge(lab: Lab) -> None:
    r = lab.dy(
        "run",
        "--rm",
        "--dns",
        "203.0.113.53",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:2",
        "cat",
        "/etc/resolv.conf",
    )
    assert r.stdout.splitlines() == ["nameserver 203.0.113.53", "search example.test", "options ndots:2"]


def test_daemon_json_dns_is_written_into_a_default_bridge_container(lab: Lab) -> None:
    _upstream_dns(lab)
    lab.root.mkdir(parents=True)
    (lab.root / "daemon.json").write_text(json.dumps({"dns": [UPSTREAM_DNS]}))
    lab.run_d("--name", "dj", "sleep", "300")
    resolv = lab.dy_ok("exec", "dj", "cat", "/etc/resolv.conf")
    assert _nameservers(resolv) == [f"nameserver {UPSTREAM_DNS}"]
    assert _hosts(lab, "dj", EXT_NAME) == (0, [EXT_ADDR])  # and the container really asks it
    # --dns wins over daemon.json's.
    out = lab.dy_ok("run", "--rm", "--dns", "198.51.100.77", "cat", "/etc/resolv.conf")
    assert _nameservers(out) == ["nameserver 198.51.100.77"]


def test_user_network_resolv_conf_points_at_the_gateway(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.74.0.0/24", "named")
    out = lab.dy_ok("run", "--rm", "--net", "named", "--dns-search", "corp.test", "cat", "/etc/resolv.conf")
    assert out.splitlines() == ["nameserver 10.74.0.1", "search corp.test"]
    # --dns-option goes in as on the default bridge; --dns does not (it names where to forward).
    out = lab.dy_ok(
        "run",
        "--rm",
        "--net",
        "named",
        "--dns",
        "198.51.100.77",
        "--dns-option",
        "ndots:3",
        "--dns-option",
        "timeout:1",
        "cat",
        "/etc/resolv.conf",
    )
    assert out.splitlines() == ["nameserver 10.74.0.1", "options ndots:3 timeout:1"]
