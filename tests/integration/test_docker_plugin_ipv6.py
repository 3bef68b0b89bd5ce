"""IPv6 on dockyard networks made through Docker (issues 15 and 17), with the real docker CLI and
docker-py: `docker network create -d dockyard --ipv6` with dockyard's IPAM and with Docker's,
the container's IPv6 address, gateway and default route, and `-p` published on both families,
reached from the upstream namespace over IPv6 through dockyard's kernel-only maps (no
docker-proxy). What dockyard does not do with IPv6 is refused naming it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import test_docker_plugin as plugin_tests
from test_docker_plugin import (
    FETCH,
    PAGE,
    dockyard_networks,
    fetch_from_upstream,
    host_veths,
    plugin_call,
    plugin_daemon,
)

from docker_lab import PrivateDockerd
from lab import HOST_ADDR, HOST_ADDR6, Lab

# The private dockerd with dockyard's plugin socket, as the IPv4 tests have it.
dockerd = plugin_tests.dockerd
SERVE = f"echo {PAGE} > /tmp/index.html && exec httpd -f -p 80 -h /tmp"


def addresses6(dockerd: PrivateDockerd, cid: str, ifname: str) -> list[str]:
    """The global IPv6 addresses (with prefix) the container sees on ifname."""
    out = dockerd.docker_ok("exec", cid, "ip", "-6", "-o", "addr", "show", ifname, "scope", "global")
    return [line.split("inet6 ")[1].split()[0] for line in out.splitlines() if "inet6 " in line]


def members6(lab: Lab, network: str) -> list[str]:
    info = json.loads(lab.dy_ok("network", "inspect", network))[0]
    return [m["IPv6Address"] for m in info["Containers"].values()]


def test_a_dual_stack_network_from_dockyard_s_ipam_serves_a_published_port_on_ipv6(
    lab: Lab, dockerd: PrivateDockerd
) -> None:
    net_id = dockerd.docker_ok(
        "network",
        "create",
        "-d",
        "dockyard",
        "--ipam-driver",
        "dockyard",
        "--ipv6",
        "--subnet",
        "10.9.0.0/24",
        "--subnet",
        "2001:db8:9::/64",
        "v6net",
    ).strip()
    name = f"docker-{net_id[:12]}"
    info = json.loads(lab.dy_ok("network", "inspect", name))[0]
    assert info["EnableIPv6"] is True
    assert {"Subnet": "2001:db8:9::/64", "Gateway": "2001:db8:9::1"} in info["IPAM"]["Config"]
    assert {"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"} in info["IPAM"]["Config"]

    cid = dockerd.docker_ok(
        "run",
        "-d",
        "--network",
        "v6net",
        "-p",
        "8080:80",
        "-p",
        "0.0.0.0:8081:80",
        "busybox",
        "sh",
        "-c",
        SERVE,
    ).strip()
    # The container has the IPv6 address dockyard recorded, and its default route via the gateway.
    inside = addresses6(dockerd, cid, "eth0")
    assert inside == ["2001:db8:9::2/64"], inside
    assert members6(lab, name) == inside
    routes = dockerd.docker_ok("exec", cid, "ip", "-6", "route")
    assert "default via 2001:db8:9::1 dev eth0" in routes, routes
    settings = json.loads(dockerd.docker_ok("inspect", cid))[0]["NetworkSettings"]["Networks"]["v6net"]
    assert settings["GlobalIPv6Address"] == "2001:db8:9::2"
    assert settings["IPv6Gateway"] == "2001:db8:9::1"
    # The bridge answers the IPv6 gateway through the veth dockyard made.
    dockerd.docker_ok("exec", cid, "ping", "-6", "-c", "1", "-W", "5", "2001:db8:9::1")

    # -p 8080:80 serves both families from the upstream namespace, with no docker-proxy.
    assert fetch_from_upstream(lab, f"http://[{HOST_ADDR6}]:8080/") == PAGE
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8080/") == PAGE
    assert "docker-proxy" not in dockerd.processes().values()
    # -p 0.0.0.0:8081:80 is IPv4 only, as with Docker's bridge.
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8081/") == PAGE
    r = lab.in_up(sys.executable, "-c", FETCH, f"http://[{HOST_ADDR6}]:8081/", timeout=10)
    assert r.returncode != 0
    assert len(lab.map_elements("publish_any6")) == 1 and len(lab.map_elements("publish_any")) == 2

    dockerd.docker_ok("rm", "-f", cid)
    assert lab.map_elements("publish_any6") == [] and lab.map_elements("publish_any") == []
    r = lab.in_up(sys.executable, "-c", FETCH, f"http://[{HOST_ADDR6}]:8080/", timeout=10)
    assert r.returncode != 0
    lab.eventually(lambda: not host_veths(lab), timeout=10, what="the removed container's veth gone")
    dockerd.docker_ok("network", "rm", "v6net")
    assert name not in dockyard_networks(lab)


def test_docker_s_default_ipam_and_docker_py_give_ipv6_to_a_dockyard_network(
    lab: Lab, dockerd: PrivateDockerd
) -> None:
    import docker
    from docker.types import IPAMConfig, IPAMPool

    client = docker.DockerClient(base_url=f"unix://{dockerd.sock}", version="auto", timeout=120)
    try:
        net = client.networks.create(
            "py6",
            driver="dockyard",
            enable_ipv6=True,
            ipam=IPAMConfig(
                pool_configs=[IPAMPool(subnet="10.11.0.0/24"), IPAMPool(subnet="2001:db8:b::/64")]
            ),
        )
        name = f"docker-{net.id[:12]}"
        container = client.containers.run(
            "busybox", ["sh", "-c", SERVE], network="py6", ports={"80/tcp": 8087}, detach=True
        )
        container.reload()
        address6 = container.attrs["NetworkSettings"]["Networks"]["py6"]["GlobalIPv6Address"]
        assert address6.startswith("2001:db8:b::")
        assert members6(lab, name) == [f"{address6}/64"]
        assert addresses6(dockerd, container.id, "eth0") == [f"{address6}/64"]
        assert fetch_from_upstream(lab, f"http://[{HOST_ADDR6}]:8087/") == PAGE

        # A second container given its IPv6 address by the CLI's --ip6.
        second = client.containers.get(
            dockerd.docker_ok(
                "run", "-d", "--network", "py6", "--ip6", "2001:db8:b::50", "busybox", "sleep", "600"
            ).strip()
        )
        assert addresses6(dockerd, second.id, "eth0") == ["2001:db8:b::50/64"]
        assert sorted(members6(lab, name)) == sorted([f"{address6}/64", "2001:db8:b::50/64"])
        # The two containers reach each other over IPv6 on the bridge.
        dockerd.docker_ok("exec", second.id, "ping", "-6", "-c", "1", "-W", "5", address6)

        for c in (container, second):
            c.remove(force=True)
        lab.eventually(lambda: not host_veths(lab), timeout=10, what="the removed containers' veths gone")
        assert lab.map_elements("publish_any6") == []
        net.remove()
        assert name not in dockyard_networks(lab)
    finally:
        client.close()


def test_what_dockyard_does_not_do_with_ipv6_is_refused_by_name(lab: Lab, dockerd: PrivateDockerd) -> None:
    r = dockerd.docker(
        "network",
        "create",
        "-d",
        "dockyard",
        "--ipv6",
        "--subnet",
        "10.12.0.0/24",
        "--subnet",
        "2001:db8:c::/64",
        "--subnet",
        "2001:db8:d::/64",
        "bad6",
    )
    assert r.returncode != 0
    assert "a network of dockyard's Docker plugin has one IPv6 subnet: give one IPv6 --subnet" in r.stderr
    r = dockerd.docker(
        "network",
        "create",
        "-d",
        "dockyard",
        "--ipam-driver",
        "dockyard",
        "--ipv6",
        "--subnet",
        "10.12.0.0/24",
        "--subnet",
        "2001:db8:c::/64",
        "--ip-range",
        "2001:db8:c::/80",
        "bad7",
    )
    assert r.returncode != 0
    assert "--ip-range is not supported by dockyard's IPAM" in r.stderr
    assert not [n for n in dockyard_networks(lab) if n.startswith("docker-")]
    assert dockerd.docker_ok("network", "ls", "-q", "--filter", "driver=dockyard") == ""


def test_the_plugin_answers_ipv6_calls_in_docker_s_shapes(lab: Lab, tmp_path: Path) -> None:
    """RequestPool with V6 (a /64 of the IPv6 default pools, or Docker's subnet), RequestAddress
    in it, CreateNetwork with IPv6Data, CreateEndpoint without an IPv6 address from Docker (one is
    leased and told), Join naming the IPv6 gateway; the wrong family or IPv6 alone refused."""
    _, sock = plugin_daemon(lab, tmp_path, {})

    def call(path: str, body: dict) -> tuple[int, dict]:
        return plugin_call(sock, path, json.dumps(body).encode())

    def pool(subnet: str, v6: bool) -> tuple[int, dict]:
        request = {"AddressSpace": "dockyard-local", "Pool": subnet, "SubPool": "", "Options": {}, "V6": v6}
        return call("/IpamDriver.RequestPool", request)

    status, chosen = pool("", True)
    assert status == 200 and chosen["Pool"].startswith("fd") and chosen["Pool"].endswith("::/64")
    assert call("/IpamDriver.ReleasePool", {"PoolID": chosen["PoolID"]}) == (200, {})
    status, answer = pool("10.96.0.0/24", True)
    assert status == 400 and answer == {
        "Err": "subnet 10.96.0.0/24 is IPv4 but Docker asked for an IPv6 pool"
    }
    status, answer = pool("2001:db8:e::/64", False)
    assert status == 400 and answer == {
        "Err": "subnet 2001:db8:e::/64 is IPv6 but Docker asked for an IPv4 pool"
    }

    v4 = pool("10.96.0.0/24", False)[1]["PoolID"]
    v6 = pool("2001:db8:e::/64", True)[1]["PoolID"]
    assert pool("2001:db8:e::/80", True) == (
        400,
        {"Err": "subnet 2001:db8:e::/80 overlaps pool 2001:db8:e::/64 given to Docker (2001:db8:e::/64)"},
    )
    gateway_request = {"RequestAddressType": "com.docker.network.gateway"}
    gw4 = call("/IpamDriver.RequestAddress", {"PoolID": v4, "Address": "", "Options": gateway_request})[1]
    gw6 = call("/IpamDriver.RequestAddress", {"PoolID": v6, "Address": "", "Options": gateway_request})[1]
    assert gw6 == {"Address": "2001:db8:e::1/64", "Data": {}}
    net = "d" * 64
    ipv4_data = [{"AddressSpace": "dockyard-local", "Pool": v4, "Gateway": gw4["Address"]}]
    ipv6_data = [{"AddressSpace": "dockyard-local", "Pool": v6, "Gateway": gw6["Address"]}]
    create = {
        "NetworkID": net,
        "Options": {"com.docker.network.generic": {}, "com.docker.network.enable_ipv6": True},
        "IPv4Data": [],
        "IPv6Data": ipv6_data,
    }
    status, answer = call("/NetworkDriver.CreateNetwork", create)
    assert status == 400
    assert answer == {"Err": "an IPv6-only network is not supported by dockyard's Docker plugin"}
    no_flag = {**create, "Options": {"com.docker.network.generic": {}}, "IPv4Data": ipv4_data}
    status, answer = call("/NetworkDriver.CreateNetwork", no_flag)
    assert status == 400 and "not enabled on this network: add --ipv6" in answer["Err"]
    assert call("/NetworkDriver.CreateNetwork", {**create, "IPv4Data": ipv4_data}) == (200, {})

    # Docker gave the IPv4 address only: the IPv6 one is leased here and told in the answer.
    endpoint = "9" * 64
    address = call("/IpamDriver.RequestAddress", {"PoolID": v4, "Address": "", "Options": {}})[1]["Address"]
    body = {"NetworkID": net, "EndpointID": endpoint, "Interface": {"Address": address}}
    status, answer = call("/NetworkDriver.CreateEndpoint", body)
    assert status == 200 and answer["Interface"]["AddressIPv6"] == "2001:db8:e::2/64"
    ep = {"NetworkID": net, "EndpointID": endpoint, "Options": {}}
    status, joined = call("/NetworkDriver.Join", ep)
    assert status == 200 and joined["Gateway"] == "10.96.0.1" and joined["GatewayIPv6"] == "2001:db8:e::1"
    # A Join after a Leave (libnetwork's Sandbox.Refresh) records the endpoint again with both
    # of its addresses, once the reaper has taken the old veth.
    assert call("/NetworkDriver.Leave", ep) == (200, {})
    assert call("/NetworkDriver.Join", ep) == (200, joined)
    assert members6(lab, f"docker-{net[:12]}") == ["2001:db8:e::2/64"]
    for path in ("/NetworkDriver.Leave", "/NetworkDriver.DeleteEndpoint"):
        assert call(path, ep) == (200, {})
    assert call("/NetworkDriver.DeleteNetwork", {"NetworkID": net}) == (200, {})
    for pool_id, addr in ((v4, address), (v4, gw4["Address"]), (v6, gw6["Address"])):
        assert call("/IpamDriver.ReleaseAddress", {"PoolID": pool_id, "Address": addr.split("/")[0]}) == (
            200,
            {},
        )
    for pool_id in (v4, v6):
        assert call("/IpamDriver.ReleasePool", {"PoolID": pool_id}) == (200, {})
    lab.eventually(lambda: not host_veths(lab), timeout=10, what="the endpoint's veth gone")
    assert not [n for n in dockyard_networks(lab) if n.startswith("docker-")]
