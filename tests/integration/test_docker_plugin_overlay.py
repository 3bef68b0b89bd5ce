"""dockyard's overlay driver offered to Docker as a global-scope driver (issue 17), `dockyard-overlay`.

Two hosts of an etcd lab (their own namespaces on one underlay), an etcd
member on each serving its v2 API too (`--enable-v2`): Debian's dockerd 20.10
keeps a global network, its endpoints and its addresses in that store
(`--cluster-store etcd://...`, etcd's v2 API), dockyardd in the same etcd's
v3 API under a prefix of its own. On each host a dockyardd serving the
plugin sockets and a private dockerd finding them. A network made with the
real docker CLI on one host is seen by both dockerds and both dockyardds;
containers run by the two dockerds reach each other over dockyard's VXLAN,
and the network removed on the other host leaves nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_docker_plugin import FETCH, PAGE, plugin_call

from docker_lab import PrivateDockerd, why_not
from etcd_lab import EtcdLab, OverlayHost, overlay_hosts
from lab import Lab

SERVE = f"echo {PAGE} > /tmp/index.html && exec httpd -f -p 80 -h /tmp"


@dataclass
class DockerHost:
    dy: OverlayHost  # dockyardd's root on the host
    docker: PrivateDockerd
    sockets: Path  # the plugin directory dockerd finds


@pytest.fixture
def docker_hosts(tmp_path: Path) -> Iterator[list[DockerHost]]:
    reason = why_not()
    if reason:
        pytest.fail(f"Debian's docker.io is needed for this test: {reason}")
    etcd = EtcdLab(tmp_path / "etcd", hosts=2)
    (tmp_path / "etcd").mkdir()
    for m in etcd.members:
        m.args = ("--enable-v2",)  # dockerd 20.10's cluster store speaks etcd's v2 API
    made: list[DockerHost] = []
    leaks: list[str] = []
    try:
        etcd.setup()
        docker_store = "etcd://" + ",".join(etcd.endpoints)
        for i, h in enumerate(overlay_hosts(etcd, tmp_path)):
            sockets = tmp_path / f"plugins{i + 1}"
            sockets.mkdir()
            config = json.loads((h.root / "daemon.json").read_text())
            config |= {"docker-plugin": True, "docker-plugin-socket": str(sockets / "dockyard.sock")}
            (h.root / "daemon.json").write_text(json.dumps(config))
            d = PrivateDockerd(
                h.host,
                plugins=sockets,
                config={"cluster-store": docker_store, "cluster-advertise": "und0:2376"},
                hostname=f"docker{i + 1}",
            )
            made.append(DockerHost(h, d, sockets))
        for host in made:
            host.dy.dy_ok("network", "ls")  # dockyardd up: both plugin sockets served
            host.docker.start()
            host.docker.import_busybox()
        yield made
    finally:
        for host in made:
            ids = host.docker.docker("ps", "-aq").stdout.split() if host.docker.proc else []
            if ids:
                host.docker.docker("rm", "-f", *ids)
            leaks += host.docker.stop()
        for host in made:
            leaks += host.dy.empty()
        leaks += etcd.teardown()
    assert not leaks, f"left behind: {leaks}"


def dockyard_networks(h: Lab) -> dict[str, tuple[str, str]]:
    """`dockyard network ls`: name -> (driver, scope)."""
    rows = [line.split() for line in h.dy_ok("network", "ls").splitlines()[1:]]
    return {row[1]: (row[2], row[3]) for row in rows}


def test_a_dockyard_overlay_network_made_through_docker_spans_two_docker_hosts(
    docker_hosts: list[DockerHost],
) -> None:
    a, b = docker_hosts
    # The overlay driver is a plugin of its own, of global scope; the bridge one stays local.
    for host in docker_hosts:
        assert plugin_call(
            host.sockets / "dockyard-overlay.sock", "/NetworkDriver.GetCapabilities", b"{}"
        ) == (
            200,
            {"Scope": "global", "ConnectivityScope": "global"},
        )
        assert plugin_call(host.sockets / "dockyard-overlay.sock", "/Plugin.Activate", b"{}") == (
            200,
            {"Implements": ["NetworkDriver"]},
        )

    # What the overlay driver does not do is refused by name, and nothing is made.
    r = a.docker.docker(
        "network", "create", "-d", "dockyard-overlay", "-o", "com.docker.network.bridge.name=br9", "bad1"
    )
    assert r.returncode != 0
    assert "option com.docker.network.bridge.name is not supported by the overlay driver" in r.stderr
    r = a.docker.docker("network", "create", "-d", "dockyard-overlay", "--ipam-driver", "dockyard", "bad2")
    assert r.returncode != 0 and "dockyard's IPAM keeps its pools on this host only" in r.stderr
    assert not [n for n in dockyard_networks(a.dy) if n.startswith("docker-")]
    assert a.docker.docker_ok("network", "ls", "-q", "--filter", "driver=dockyard-overlay") == ""

    net_id = a.docker.docker_ok(
        "network", "create", "-d", "dockyard-overlay", "--subnet", "10.61.0.0/24",
        "--ipv6", "--subnet", "fd00:61::/64", "gnet",
    ).strip()  # fmt: skip
    name = f"docker-{net_id[:12]}"
    for host in docker_hosts:
        row = host.docker.docker_ok(
            "network", "ls", "--filter", "name=gnet", "--format", "{{.Driver}} {{.Scope}}"
        )
        assert row.strip() == "dockyard-overlay global"
        host.dy.eventually(lambda h=host: name in dockyard_networks(h.dy), 10, f"{name} on {host.dy.host}")
        assert dockyard_networks(host.dy)[name] == ("overlay", "global")

    server = a.docker.docker_ok(
        "run", "-d", "--network", "gnet", "-p", "8088:80", "busybox", "sh", "-c", SERVE
    ).strip()
    settings = json.loads(a.docker.docker_ok("inspect", server))[0]["NetworkSettings"]["Networks"]["gnet"]
    address, mac = settings["IPAddress"], settings["MacAddress"]
    assert address.startswith("10.61.0.")
    address6 = settings["GlobalIPv6Address"]
    assert address6.startswith("fd00:61::") and settings["GlobalIPv6PrefixLen"] == 64, settings
    # Host B's kernel knows the server at host A's VTEP, from dockyard's cluster.
    vx = f"vx-{json.loads(b.dy.dy_ok('network', 'inspect', name))[0]['Id'][:12]}"
    b.dy.eventually(lambda: b.dy.fdb(vx).get(mac) == a.dy.addr, 10, "the server's FDB entry on host B")

    # A container run by the other dockerd fetches the page over the overlay.
    # (busybox-static's wget looks even an address up through glibc's NSS, and crashes: nc.)
    get = f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {address} 80"
    fetched = b.docker.docker_ok("run", "--rm", "--network", "gnet", "busybox", "sh", "-c", get)
    assert fetched.startswith("HTTP/1.") and fetched.rstrip().endswith(PAGE), fetched
    client = b.docker.docker_ok("run", "-d", "--network", "gnet", "busybox", "sleep", "600").strip()
    client_settings = json.loads(b.docker.docker_ok("inspect", client))[0]["NetworkSettings"]["Networks"][
        "gnet"
    ]
    client_address, client_address6 = client_settings["IPAddress"], client_settings["GlobalIPv6Address"]
    # Docker's global IPAM: one address once in the cluster, in each family.
    assert client_address != address and client_address6 != address6
    assert client_address6.startswith("fd00:61::")
    a.docker.docker_ok("exec", server, "ping", "-c", "1", "-W", "5", client_address)
    # Dual stack across hosts: IPv6 over the same VXLAN, both ways, the neighbours answered
    # by the VXLAN device's proxy from dockyard's cluster records (no NDP on the underlay).
    a.docker.docker_ok("exec", server, "ping", "-6", "-c", "1", "-W", "5", client_address6)
    b.docker.docker_ok("exec", client, "ping", "-6", "-c", "1", "-W", "5", address6)

    # -p on the overlay network: published on host A with dockyard's maps (no docker-proxy),
    # reached from host B's namespace at host A's underlay address.
    r = b.dy.in_host(sys.executable, "-c", FETCH, f"http://{a.dy.addr}:8088/")
    assert r.returncode == 0 and r.stdout.strip() == PAGE, r.stderr
    assert "docker-proxy" not in a.docker.processes().values()

    # dockyardd restarted on host A: the new daemon publishes Docker's endpoint again (the old
    # one left it to it, as it does a running container's), so host B still reaches the server.
    a.dy.dy_ok("daemon", "stop")
    a.dy.dy_ok("network", "ls")
    b.dy.eventually(lambda: b.dy.fdb(vx).get(mac) == a.dy.addr, 10, "the server's FDB entry kept on host B")
    fetched = b.docker.docker_ok("exec", client, "sh", "-c", get)
    assert fetched.rstrip().endswith(PAGE), fetched
    # Both dockerds list both containers (the other host's as Docker's `ep-` entries).
    for host in docker_hosts:
        containers = json.loads(host.docker.docker_ok("network", "inspect", "gnet"))[0]["Containers"]
        assert sorted(c["IPv4Address"] for c in containers.values()) == sorted(
            [f"{address}/24", f"{client_address}/24"]
        )
        assert sorted(c["IPv6Address"] for c in containers.values()) == sorted(
            [f"{address6}/64", f"{client_address6}/64"]
        )

    a.docker.docker_ok("rm", "-f", server)
    b.docker.docker_ok("rm", "-f", client)
    # Removed on the host that did not make it: gone from both dockyardds and both dockerds.
    b.docker.docker_ok("network", "rm", "gnet")
    for host in docker_hosts:
        host.dy.eventually(
            lambda h=host: name not in dockyard_networks(h.dy), 10, f"{name} gone on {host.dy.host}"
        )
        assert vx not in host.dy.links()
        assert host.docker.docker_ok("network", "ls", "-q", "--filter", "name=gnet").strip() == ""
