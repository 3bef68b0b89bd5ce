"""DNS by name on user networks, end to end: the daemon starts its resolver, containers ask it."""

from __future__ import annotations

import sys
from pathlib import Path

from lab import WORLD_ADDR, Lab

UPSTREAM_DNS = str(Path(__file__).resolve().parents[1] / "tools" / "upstream_dns.py")


def _hosts(lab: Lab, container: str, name: str) -> tuple[int, list[str]]:
    """getent in the container: (exit status, addresses), all A records for a name."""
    r = lab.dy("exec", container, "getent", "ahostsv4", name)
    return r.returncode, sorted({line.split()[0] for line in r.stdout.splitlines() if line.strip()})


def test_names_aliases_and_short_ids_resolve_on_a_user_network(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.60.0.0/24", "app")
    web = lab.run_d("--name", "web", "--net", "app", "--network-alias", "front", "sleep", "300")
    lab.run_d("--name", "web2", "--net", "app", "--network-alias", "front", "sleep", "300")
    lab.run_d("--name", "client", "--net", "app", "sleep", "300")
    web_ip = lab.inspect("web")["NetworkSettings"]["Networks"]["app"]["IPAddress"]
    web2_ip = lab.inspect("web2")["NetworkSettings"]["Networks"]["app"]["IPAddress"]
    assert lab.dy_ok("exec", "client", "cat", "/etc/resolv.conf").split() == ["nameserver", "10.60.0.1"]
    assert _hosts(lab, "client", "web") == (0, [web_ip])
    assert _hosts(lab, "client", "front") == (0, sorted([web_ip, web2_ip]))
    assert _hosts(lab, "client", web[:12]) == (0, [web_ip])
    # PTR: the address gives the name back.
    r = lab.dy("exec", "client", "getent", "hosts", web_ip)
    assert r.returncode == 0 and "web" in r.stdout.split()[1:]
    # Unknown names: NXDOMAIN (no upstream answers for them), getent exits 2.
    assert _hosts(lab, "client", "nosuchname")[0] == 2


def test_names_on_other_networks_do_not_resolve(lab: Lab) -> None:
    lab.dy_ok("network", "create", "left")
    lab.dy_ok("network", "create", "right")
    lab.run_d("--name", "lefty", "--net", "left", "sleep", "300")
    lab.run_d("--name", "righty", "--net", "right", "sleep", "300")
    assert _hosts(lab, "righty", "lefty")[0] == 2
    assert _hosts(lab, "lefty", "righty")[0] == 2
    # The default bridge keeps Docker's rules: no DNS by name there.
    lab.run_d("--name", "plain", "sleep", "300")
    lab.run_d("--name", "plain2", "sleep", "300")
    assert _hosts(lab, "plain2", "plain")[0] == 2


def test_joining_and_leaving_take_effect_at_once(lab: Lab) -> None:
    lab.dy_ok("network", "create", "live")
    lab.run_d("--name", "asker", "--net", "live", "sleep", "300")
    assert _hosts(lab, "asker", "late")[0] == 2
    lab.run_d("--name", "late", "--net", "live", "sleep", "300")
    assert _hosts(lab, "asker", "late")[0] == 0
    lab.dy_ok("rm", "-f", "late")
    assert _hosts(lab, "asker", "late")[0] == 2
    # connect / disconnect with an alias
    lab.run_d("--name", "roamer", "sleep", "300")
    lab.dy_ok("network", "connect", "--alias", "db", "live", "roamer")
    assert _hosts(lab, "asker", "db")[0] == 0
    lab.dy_ok("network", "disconnect", "live", "roamer")
    assert _hosts(lab, "asker", "db")[0] == 2


def test_other_names_are_forwarded_upstream(lab: Lab) -> None:
    lab.in_up("ip", "addr", "add", f"{WORLD_ADDR[:-1]}53/24", "dev", "lo")
    server = lab.spawn_in(
        lab.up, sys.executable, UPSTREAM_DNS, "203.0.113.53", "ext.example.test=203.0.113.99"
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    lab.dy_ok("network", "create", "fwd")
    # --dns on a user network names the server the resolver forwards to.
    lab.run_d("--name", "fw", "--net", "fwd", "--dns", "203.0.113.53", "sleep", "300")
    assert lab.dy_ok("exec", "fw", "cat", "/etc/resolv.conf").split()[:1] == ["nameserver"]
    assert _hosts(lab, "fw", "ext.example.test") == (0, ["203.0.113.99"])
    assert _hosts(lab, "fw", "missing.example.test")[0] == 2
    # daemon.json "dns" does the same for every container.
    lab.dy_ok("daemon", "stop")
    (lab.root / "daemon.json").write_text('{"dns": ["203.0.113.53"]}')
    lab.dy_ok("rm", "-f", "fw")
    lab.run_d("--name", "fw2", "--net", "fwd", "sleep", "300")
    assert _hosts(lab, "fw2", "ext.example.test") == (0, ["203.0.113.99"])


def test_the_resolver_comes_back_after_it_died(lab: Lab) -> None:
    import os
    import signal

    lab.dy_ok("network", "create", "phoenix")
    lab.run_d("--name", "p1", "--net", "phoenix", "sleep", "300")
    pid = int((lab.root / "dns.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    lab.run_d("--name", "p2", "--net", "phoenix", "sleep", "300")
    assert _hosts(lab, "p2", "p1")[0] == 0
    assert int((lab.root / "dns.pid").read_text()) != pid
    # And it goes when the last user network goes.
    lab.dy_ok("rm", "-f", "p1", "p2")
    lab.eventually(lambda: lab.dy("network", "rm", "phoenix").returncode == 0, what="network removed")
    lab.eventually(lambda: not (lab.root / "dns.pid").exists(), what="resolver stopped")


def test_port_53_published_next_to_the_resolver(lab: Lab) -> None:
    """As with aardvark-dns, the resolver holds port 53 on the gateways: publishing 53 on
    every address is refused with a hint, on one host address it works, and names still resolve."""
    lab.dy_ok("network", "create", "dnsnet")
    r = lab.dy("run", "-d", "--net", "dnsnet", "-p", "53:53/udp", "sleep", "300")
    assert r.returncode == 125 and "publish on one host address" in r.stderr
    lab.run_d("--name", "dnsd", "--net", "dnsnet", "-p", "198.51.100.1:53:53/udp", "sleep", "300")
    lab.run_d("--name", "other", "--net", "dnsnet", "sleep", "300")
    assert _hosts(lab, "other", "dnsd")[0] == 0


def _ip(lab: Lab, container: str, network: str) -> str:
    return lab.inspect(container)["NetworkSettings"]["Networks"][network]["IPAddress"]


def test_a_container_on_two_networks_resolves_the_names_of_both(lab: Lab) -> None:
    """Docker's rule: every network the asking container is on, and none other."""
    lab.dy_ok("network", "create", "--subnet", "10.61.0.0/24", "front")
    lab.dy_ok("network", "create", "--subnet", "10.62.0.0/24", "back")
    lab.dy_ok("network", "create", "--subnet", "10.63.0.0/24", "aside")
    lab.run_d("--name", "fr", "--net", "front", "sleep", "300")
    lab.run_d("--name", "bk", "--net", "back", "--network-alias", "db", "sleep", "300")
    lab.run_d("--name", "far", "--net", "aside", "sleep", "300")
    lab.run_d("--name", "both", "--net", "front", "sleep", "300")
    assert _hosts(lab, "both", "bk")[0] == 2
    lab.dy_ok("network", "connect", "back", "both")
    # resolv.conf still names eth0's gateway, which answers for both networks.
    assert lab.dy_ok("exec", "both", "cat", "/etc/resolv.conf").split() == ["nameserver", "10.61.0.1"]
    assert _hosts(lab, "both", "fr") == (0, [_ip(lab, "fr", "front")])
    assert _hosts(lab, "both", "bk") == (0, [_ip(lab, "bk", "back")])
    assert _hosts(lab, "both", "db") == (0, [_ip(lab, "bk", "back")])
    assert _hosts(lab, "both", "bk.back") == (0, [_ip(lab, "bk", "back")])
    r = lab.dy("exec", "both", "getent", "hosts", _ip(lab, "bk", "back"))  # PTR
    assert r.returncode == 0 and "bk" in r.stdout.split()[1:]
    # A network it is not on stays out of sight; and the others see only their own networks.
    assert _hosts(lab, "both", "far")[0] == 2
    assert _hosts(lab, "bk", "both") == (0, [_ip(lab, "both", "back")])
    assert _hosts(lab, "bk", "fr")[0] == 2
    assert _hosts(lab, "fr", "bk")[0] == 2
    # Leaving eth0's network: resolv.conf follows to the gateway it still reaches.
    lab.dy_ok("network", "disconnect", "front", "both")
    assert lab.dy_ok("exec", "both", "cat", "/etc/resolv.conf").split() == ["nameserver", "10.62.0.1"]
    assert _hosts(lab, "both", "bk") == (0, [_ip(lab, "bk", "back")])
    assert _hosts(lab, "both", "fr")[0] == 2


def test_a_default_bridge_container_connected_to_a_user_network_gets_its_names(lab: Lab) -> None:
    """As Docker, which points resolv.conf at its resolver once a container joins such a network."""
    lab.in_up("ip", "addr", "add", f"{WORLD_ADDR[:-1]}53/24", "dev", "lo")
    server = lab.spawn_in(
        lab.up, sys.executable, UPSTREAM_DNS, "203.0.113.53", "ext.example.test=203.0.113.99"
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    lab.dy_ok("network", "create", "--subnet", "10.64.0.0/24", "later")
    lab.run_d("--name", "target", "--net", "later", "sleep", "300")
    lab.run_d("--name", "oldie", "--dns", "203.0.113.53", "--dns-option", "ndots:1", "sleep", "300")
    before = lab.dy_ok("exec", "oldie", "cat", "/etc/resolv.conf")
    assert before.splitlines() == ["nameserver 203.0.113.53", "options ndots:1"]
    assert _hosts(lab, "oldie", "target")[0] == 2
    lab.dy_ok("network", "connect", "later", "oldie")
    assert lab.dy_ok("exec", "oldie", "cat", "/etc/resolv.conf").splitlines() == [
        "nameserver 10.64.0.1",
        "options ndots:1",
    ]
    assert _hosts(lab, "oldie", "target") == (0, [_ip(lab, "target", "later")])
    assert _hosts(lab, "target", "oldie") == (0, [_ip(lab, "oldie", "later")])
    assert _hosts(lab, "oldie", "ext.example.test") == (0, ["203.0.113.99"])  # forwarded to its --dns
    lab.dy_ok("network", "disconnect", "later", "oldie")
    assert lab.dy_ok("exec", "oldie", "cat", "/etc/resolv.conf") == before
    assert _hosts(lab, "oldie", "target")[0] == 2
    assert _hosts(lab, "oldie", "ext.example.test") == (0, ["203.0.113.99"])
