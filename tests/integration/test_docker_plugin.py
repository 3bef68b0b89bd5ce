"""dockyard as Docker's network and IPAM plugin (issue 17), driven through the real docker CLI
and docker-py.

A private dockerd (tests/docker_lab.py) runs in the lab's host namespace and
finds dockyardd's plugin socket in its /run/docker/plugins; busybox is
imported into it. Ports are reached from the upstream namespace; either
daemon is restarted and killed, and what is left is looked for in what the
test made (its network's endpoints, the port maps, the host's veths, the
held ports).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_lab import PrivateDockerd, why_not
from dockyard.engine.docker_plugin import PORTMAP
from lab import HOST_ADDR, Lab

PAGE = "served-through-dockyard"
FETCH = (
    "import sys, urllib.request;print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().strip())"
)


@pytest.fixture
def dockerd(lab: Lab, tmp_path: Path) -> Iterator[PrivateDockerd]:
    reason = why_not()
    if reason:
        pytest.fail(f"Debian's docker.io is needed for this test: {reason}")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    lab.root.mkdir(parents=True, exist_ok=True)
    (lab.root / "daemon.json").write_text(
        json.dumps({"docker-plugin": True, "docker-plugin-socket": str(plugins / "dockyard.sock")})
    )
    lab.dy_ok("network", "ls")  # starts dockyardd, which serves the plugin socket
    assert (plugins / "dockyard.sock").exists()
    d = PrivateDockerd(lab.host, plugins=plugins)
    try:
        d.start()
        d.import_busybox()
        yield d
    finally:
        problems = d.stop()
        assert not problems, problems


def fetch_from_upstream(lab: Lab, url: str, deadline: float = 20.0) -> str:
    answer: list[str] = []

    def answered() -> bool:
        r = lab.in_up(sys.executable, "-c", FETCH, url, timeout=10)
        if r.returncode == 0:
            answer.append(r.stdout.strip())
        return r.returncode == 0

    lab.eventually(answered, timeout=deadline, what=f"{url} answers from upstream")
    return answer[0]


def dockyard_networks(lab: Lab) -> dict[str, str]:
    """`dockyard network ls`: name -> driver."""
    rows = [line.split() for line in lab.dy_ok("network", "ls").splitlines()[1:]]
    return {row[1]: row[2] for row in rows}


def test_docker_runs_a_published_container_on_a_dockyard_network(lab: Lab, dockerd: PrivateDockerd) -> None:
    net_id = dockerd.docker_ok(
        "network", "create", "-d", "dockyard", "--ipam-driver", "dockyard", "dnet"
    ).strip()
    assert f"docker-{net_id[:12]}" in dockyard_networks(lab)
    cid = dockerd.docker_ok(
        "run",
        "-d",
        "--network",
        "dnet",
        "-p",
        "8080:80",
        "busybox",
        "sh",
        "-c",
        f"echo {PAGE} > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
    ).strip()
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8080/") == PAGE
    names = dockerd.processes().values()
    assert "docker-proxy" not in names, sorted(names)
    # The container's address is the one dockyard recorded on its network.
    inside = dockerd.docker_ok("exec", cid, "ip", "-4", "-o", "addr", "show", "eth0")
    members = json.loads(lab.dy_ok("network", "inspect", f"docker-{net_id[:12]}"))[0]
    assert members

    dockerd.docker_ok("rm", "-f", cid)
    dockerd.docker_ok("network", "rm", "dnet")
    assert f"docker-{net_id[:12]}" not in dockyard_networks(lab)
    assert inside


def address_in(dockerd: PrivateDockerd, cid: str, ifname: str) -> str:
    """The IPv4 address with prefix the container sees on ifname."""
    out = dockerd.docker_ok("exec", cid, "ip", "-4", "-o", "addr", "show", ifname)
    return out.split("inet ")[1].split()[0]


def members(lab: Lab, network: str) -> dict[str, str]:
    """Who `dockyard network inspect` lists on a network: name -> IPv4 address."""
    info = json.loads(lab.dy_ok("network", "inspect", network))[0]
    return {m["Name"]: m["IPv4Address"] for m in info["Containers"].values()}


def _holders(ns: str) -> list[str]:
    """Processes that are in network namespace `ns` ("net:[inode]") or hold a descriptor of it."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/net") == ns:
                found.append(f"process {pid} is in {ns}")
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == ns:
                    found.append(f"process {pid} holds {ns} (fd {fd})")
        except OSError:
            continue  # gone meanwhile, or a kernel thread
    return found


def host_veths(lab: Lab) -> list[str]:
    return [name for name in lab.links() if name.startswith("veth")]


def test_docker_ipam_connect_and_disconnect(lab: Lab, dockerd: PrivateDockerd) -> None:
    # Docker's own IPAM with a subnet, next to one from dockyard's IPAM.
    net2 = dockerd.docker_ok(
        "network", "create", "-d", "dockyard", "--subnet", "10.77.0.0/24", "dnet2"
    ).strip()
    net1 = dockerd.docker_ok(
        "network", "create", "-d", "dockyard", "--ipam-driver", "dockyard", "dnet1"
    ).strip()
    name1, name2 = f"docker-{net1[:12]}", f"docker-{net2[:12]}"
    assert dockyard_networks(lab)[name2] == "bridge"
    info2 = json.loads(lab.dy_ok("network", "inspect", name2))[0]
    assert info2["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.1"}]
    cid = dockerd.docker_ok("run", "-d", "--network", "dnet1", "busybox", "sleep", "600").strip()
    eth0 = address_in(dockerd, cid, "eth0")
    assert members(lab, name1) == {f"docker:{endpoint_of(dockerd, cid, 'dnet1')[:12]}": eth0}
    gateway1 = json.loads(lab.dy_ok("network", "inspect", name1))[0]["IPAM"]["Config"][0]["Gateway"]
    assert f"default via {gateway1} dev eth0" in dockerd.docker_ok("exec", cid, "ip", "route")

    dockerd.docker_ok("network", "connect", "--ip", "10.77.0.9", "dnet2", cid)
    assert address_in(dockerd, cid, "eth1") == "10.77.0.9/24"
    assert members(lab, name2) == {f"docker:{endpoint_of(dockerd, cid, 'dnet2')[:12]}": "10.77.0.9/24"}
    # The bridge answers its gateway address through the veth dockyard made.
    dockerd.docker_ok("exec", cid, "ping", "-c", "1", "-W", "5", "10.77.0.1")
    assert len(host_veths(lab)) == 2

    dockerd.docker_ok("network", "disconnect", "dnet2", cid)
    assert "eth1" not in dockerd.docker_ok("exec", cid, "ip", "-o", "link")
    assert members(lab, name2) == {}
    assert len(host_veths(lab)) == 1

    dockerd.docker_ok("rm", "-f", cid)
    lab.eventually(lambda: not host_veths(lab), timeout=10, what="the veth of the removed container gone")
    dockerd.docker_ok("network", "rm", "dnet1", "dnet2")
    assert not {name1, name2} & set(dockyard_networks(lab))


def endpoint_of(dockerd: PrivateDockerd, cid: str, network: str) -> str:
    info = json.loads(dockerd.docker_ok("inspect", cid))[0]
    return info["NetworkSettings"]["Networks"][network]["EndpointID"]


def test_what_dockyard_does_not_do_is_refused_with_its_reason(lab: Lab, dockerd: PrivateDockerd) -> None:
    r = dockerd.docker("network", "create", "-d", "dockyard", "-o", "com.example.color=blue", "bad1")
    assert r.returncode != 0
    assert "network option com.example.color is not supported by dockyard" in r.stderr
    r = dockerd.docker(
        "network",
        "create",
        "-d",
        "dockyard",
        "--subnet",
        "10.78.0.0/24",
        "--aux-address",
        "x=10.78.0.9",
        "bad2",
    )
    assert r.returncode != 0
    assert "--aux-address is not supported by dockyard's Docker plugin" in r.stderr
    r = dockerd.docker(
        "network",
        "create",
        "-d",
        "dockyard",
        "--ipam-driver",
        "dockyard",
        "--ip-range",
        "10.78.0.0/25",
        "--subnet",
        "10.78.0.0/24",
        "bad3",
    )
    assert r.returncode != 0
    assert "--ip-range is not supported by dockyard's IPAM" in r.stderr
    # Nothing of them was made.
    assert not [n for n in dockyard_networks(lab) if n.startswith("docker-")]
    assert dockerd.docker_ok("network", "ls", "-q", "--filter", "driver=dockyard") == ""


def test_a_dockyardd_restart_keeps_the_port_and_killing_dockerd_leaves_nothing(
    lab: Lab, dockerd: PrivateDockerd
) -> None:
    dockerd.docker_ok("network", "create", "-d", "dockyard", "--ipam-driver", "dockyard", "dnet")
    dockerd.docker_ok(
        "run",
        "-d",
        "--network",
        "dnet",
        "-p",
        "127.0.0.1:8081:80",
        "-p",
        "8082:80",
        "busybox",
        "sh",
        "-c",
        f"echo {PAGE} > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
    )
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8082/") == PAGE
    # 127.0.0.1 is the host's own loopback: not published to the upstream.
    r = lab.in_up(sys.executable, "-c", FETCH, f"http://{HOST_ADDR}:8081/", timeout=10)
    assert r.returncode != 0
    r = lab.in_host(sys.executable, "-c", FETCH, "http://127.0.0.1:8081/", timeout=10)
    assert r.returncode == 0 and r.stdout.strip() == PAGE

    lab.dy_ok("daemon", "stop")
    lab.dy_ok("network", "ls")  # a new dockyardd: its gc keeps the Docker endpoint's maps
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8082/") == PAGE

    # dockerd and all it started, killed: the container's netns goes, and its veth with it.
    problems = dockerd.kill()
    assert problems == []
    lab.eventually(lambda: not host_veths(lab), timeout=20, what="the killed container's veth gone")


def plugin_call(sock: Path, path: str, body: bytes) -> tuple[int, dict]:
    """One POST as dockerd's plugin client makes it, on the plugin socket."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(30)
    conn.connect(str(sock))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: plugin\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    conn.sendall(head.encode() + body)
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def test_the_plugin_socket_answers_in_docker_s_shapes(lab: Lab, tmp_path: Path) -> None:
    sock = tmp_path / "plugins" / "dockyard.sock"
    lab.root.mkdir(parents=True, exist_ok=True)
    (lab.root / "daemon.json").write_text(json.dumps({"docker-plugin-socket": str(sock)}))
    lab.dy_ok("network", "ls")
    assert not sock.exists()  # off unless asked
    lab.dy_ok("daemon", "stop")
    (lab.root / "daemon.json").write_text(
        json.dumps({"docker-plugin": True, "docker-plugin-socket": str(sock)})
    )
    lab.dy_ok("network", "ls")
    assert plugin_call(sock, "/Plugin.Activate", b"{}") == (
        200,
        {"Implements": ["NetworkDriver", "IpamDriver"]},
    )
    assert plugin_call(sock, "/NetworkDriver.GetCapabilities", b"{}") == (
        200,
        {"Scope": "local", "ConnectivityScope": "local"},
    )
    status, answer = plugin_call(sock, "/NetworkDriver.Nope", b"{}")
    assert status == 404 and "NetworkDriver.Nope" in answer["Err"]
    status, answer = plugin_call(sock, "/IpamDriver.RequestPool", b"not json")
    assert status == 400 and "not JSON" in answer["Err"]
    # A multi-host network's pool: dockyard's records are this host's, so it is refused, not split.
    request = {"AddressSpace": "dockyard-global", "Pool": "", "SubPool": "", "Options": {}, "V6": False}
    status, answer = plugin_call(sock, "/IpamDriver.RequestPool", json.dumps(request).encode())
    assert status == 400 and "Docker's default IPAM" in answer["Err"]
    request = {"PoolID": "10.1.0.0/16", "Address": "", "Options": {}}
    status, answer = plugin_call(sock, "/IpamDriver.RequestAddress", json.dumps(request).encode())
    assert status == 400 and answer == {"Err": "pool 10.1.0.0/16 is not one of dockyard's"}
    lab.dy_ok("daemon", "stop")
    assert not sock.exists()


def test_docker_py_drives_every_verb(lab: Lab, dockerd: PrivateDockerd) -> None:
    import docker
    from docker.types import IPAMConfig, IPAMPool

    client = docker.DockerClient(base_url=f"unix://{dockerd.sock}", version="auto", timeout=120)
    try:
        net1 = client.networks.create(
            "pynet1",
            driver="dockyard",
            ipam=IPAMConfig(driver="dockyard", pool_configs=[IPAMPool(subnet="10.79.0.0/24")]),
        )
        net2 = client.networks.create(
            "pynet2", driver="dockyard", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.80.0.0/24")])
        )
        name1, name2 = f"docker-{net1.id[:12]}", f"docker-{net2.id[:12]}"
        assert {name1, name2} <= set(dockyard_networks(lab))
        info1 = json.loads(lab.dy_ok("network", "inspect", name1))[0]
        assert info1["IPAM"]["Config"][0]["Subnet"] == "10.79.0.0/24"

        container = client.containers.run(
            "busybox",
            ["sh", "-c", f"echo {PAGE} > /tmp/index.html && exec httpd -f -p 80 -h /tmp"],
            network="pynet1",
            ports={"80/tcp": 8083},
            detach=True,
        )
        assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8083/") == PAGE
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"]["pynet1"]["IPAddress"]
        assert address.startswith("10.79.0.")
        assert list(members(lab, name1).values()) == [f"{address}/24"]

        net2.connect(container, ipv4_address="10.80.0.7")
        assert address_in(dockerd, container.id, "eth1") == "10.80.0.7/24"
        assert list(members(lab, name2).values()) == ["10.80.0.7/24"]
        net2.disconnect(container)
        assert members(lab, name2) == {}
        assert "eth1" not in dockerd.docker_ok("exec", container.id, "ip", "-o", "link")

        container.remove(force=True)
        lab.eventually(lambda: not host_veths(lab), timeout=10, what="the removed container's veth gone")
        assert lab.map_elements("publish_any") == []
        net1.remove()
        net2.remove()
        assert not {name1, name2} & set(dockyard_networks(lab))
    finally:
        client.close()


HOLD_PROBE = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "try:\n"
    "    s.bind(('0.0.0.0', int(sys.argv[1])))\n"
    "except OSError as e:\n"
    "    print(e.errno)\n"
    "else:\n"
    "    print('free')\n"
)


def port_held(lab: Lab, port: int) -> bool:
    """Whether a host process in the lab's host namespace is refused the port (EADDRINUSE)."""
    r = lab.in_host(sys.executable, "-c", HOLD_PROBE, str(port))
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == "98"


def docker_members(lab: Lab) -> list[str]:
    """Every Docker endpoint dockyard has, on any of its networks."""
    found = []
    for name in dockyard_networks(lab):
        if name.startswith("docker-"):
            found += list(members(lab, name))
    return found


def serve_published(dockerd: PrivateDockerd, network: str, port: int, *extra: str) -> str:
    return dockerd.docker_ok(
        "run",
        "-d",
        "--network",
        network,
        "-p",
        f"{port}:80",
        *extra,
        "busybox",
        "sh",
        "-c",
        f"echo {PAGE} > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
    ).strip()


def test_the_published_port_survives_a_dockerd_restart_and_a_dockerd_crash_once(
    lab: Lab, dockerd: PrivateDockerd
) -> None:
    dockerd.docker_ok("network", "create", "-d", "dockyard", "--ipam-driver", "dockyard", "dnet")
    cid = serve_published(dockerd, "dnet", 8084, "--restart", "always")
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8084/") == PAGE
    assert port_held(lab, 8084)

    # A clean restart: dockerd stops the container (Leave, Revoke, DeleteEndpoint), then runs it again.
    assert dockerd.stop(keep=True) == []
    assert docker_members(lab) == [] and lab.map_elements("publish_any") == []
    assert not port_held(lab, 8084)
    dockerd.start()
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8084/") == PAGE
    assert len(docker_members(lab)) == 1 and len(lab.map_elements("publish_any")) == 1
    assert port_held(lab, 8084)

    # A crash: dockerd and all it started killed; the container's netns (and its veth) go with it.
    pid = int(dockerd.docker_ok("inspect", "-f", "{{.State.Pid}}", cid))
    sandbox = os.readlink(f"/proc/{pid}/ns/net")
    assert _holders(sandbox)  # the container's process, at least: the probe sees them
    assert dockerd.kill() == []
    # Nothing holds the sandbox any more, as a process's namespace or an open descriptor (what
    # the crash must ensure); the kernel then dismantles it, and the veth with it, in its own
    # time: its cleanup work runs behind every namespace the machine is dropping, with no bound
    # (beyond 120 s once, while two suites ran side by side). What dockyard is left with is the
    # same either way, so the test removes the veth as the kernel will, where it is still there.
    assert not _holders(sandbox)
    stale = host_veths(lab)
    assert len(stale) <= 1, stale
    for veth in stale:
        r = lab.in_host("ip", "link", "del", veth)
        assert r.returncode == 0 or "Cannot find device" in r.stderr, r.stderr
    assert not host_veths(lab)
    # dockyard still holds what Docker asked for: it cannot know Docker died.
    assert len(docker_members(lab)) == 1 and port_held(lab, 8084)
    # The restarted dockerd cleans its stale endpoint up through the plugin and runs the container again.
    dockerd.start()
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8084/") == PAGE
    lab.eventually(
        lambda: len(docker_members(lab)) == 1, timeout=20, what="one Docker endpoint after the crash"
    )
    assert len(lab.map_elements("publish_any")) == 1 and len(host_veths(lab)) == 1

    ids = dockerd.docker_ok("ps", "-aq").split()
    dockerd.docker_ok("rm", "-f", *ids)
    dockerd.docker_ok("network", "rm", "dnet")
    assert docker_members(lab) == [] and lab.map_elements("publish_any") == []
    assert not port_held(lab, 8084)
    lab.eventually(lambda: not host_veths(lab), timeout=10, what="no veth left")
    assert not [n for n in dockyard_networks(lab) if n.startswith("docker-")]


def test_a_dockyardd_crash_keeps_the_holds_and_ports_and_leaves_nothing(
    lab: Lab, dockerd: PrivateDockerd
) -> None:
    dockerd.docker_ok("network", "create", "-d", "dockyard", "--ipam-driver", "dockyard", "dnet")
    cid = serve_published(dockerd, "dnet", 8085)
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8085/") == PAGE
    pid = int((lab.root / "dockyardd.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    lab.eventually(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, what="dockyardd gone")
    # The kernel's maps serve on without the daemon.
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8085/") == PAGE

    lab.dy_ok("network", "ls")  # a new dockyardd, on the same plugin socket
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8085/") == PAGE
    assert port_held(lab, 8085)
    assert len(docker_members(lab)) == 1 and len(lab.map_elements("publish_any")) == 1

    # Docker reaches the new daemon: a second container published, then everything removed.
    second = serve_published(dockerd, "dnet", 8086)
    assert fetch_from_upstream(lab, f"http://{HOST_ADDR}:8086/") == PAGE
    assert len(docker_members(lab)) == 2 and len(lab.map_elements("publish_any")) == 2
    dockerd.docker_ok("rm", "-f", cid, second)
    dockerd.docker_ok("network", "rm", "dnet")
    assert docker_members(lab) == [] and lab.map_elements("publish_any") == []
    assert not port_held(lab, 8085) and not port_held(lab, 8086)
    lab.eventually(lambda: not host_veths(lab), timeout=10, what="no veth left")


def test_a_thousand_port_range_starts_no_process(lab: Lab, dockerd: PrivateDockerd) -> None:
    dockerd.docker_ok("network", "create", "-d", "dockyard", "--ipam-driver", "dockyard", "dnet")
    idle = dockerd.processes()
    cid = dockerd.docker_ok(
        "run", "-d", "--network", "dnet", "-p", "20000-20999:20000-20999", "busybox", "sleep", "600"
    ).strip()
    running = dockerd.processes()
    added = {pid: name for pid, name in running.items() if pid not in idle}
    # The container's own process and its shim (found only while it is still a child of
    # containerd: it daemonizes): no docker-proxy, nothing per port.
    assert "sleep" in added.values() and set(added.values()) <= {"containerd-shim", "sleep"}, added
    assert len(lab.map_elements("publish_any")) == 1000
    assert port_held(lab, 20000) and port_held(lab, 20999)
    dockerd.docker_ok("rm", "-f", cid)
    assert lab.map_elements("publish_any") == []
    dockerd.docker_ok("network", "rm", "dnet")


class DirectPlugin:
    """dockerd's calls made straight to the plugin socket, for what dockerd cannot be made to do on
    cue (a Join after a Leave, a crash between two calls); every answer must be a success."""

    NET = "c" * 64
    SPACE = "dockyard-local"

    def __init__(self, sock: Path) -> None:
        self.sock = sock

    def call(self, path: str, body: dict) -> dict:
        status, answer = plugin_call(self.sock, path, json.dumps(body).encode())
        assert status == 200 and "Err" not in answer, (path, status, answer)
        return answer

    def network(self, subnet: str) -> str:
        request = {"AddressSpace": self.SPACE, "Pool": subnet, "SubPool": "", "Options": {}, "V6": False}
        pool = self.call("/IpamDriver.RequestPool", request)["PoolID"]
        gateway_request = {"RequestAddressType": "com.docker.network.gateway"}
        gateway = self.call(
            "/IpamDriver.RequestAddress", {"PoolID": pool, "Address": "", "Options": gateway_request}
        )["Address"]
        self.call(
            "/NetworkDriver.CreateNetwork",
            {
                "NetworkID": self.NET,
                "Options": {"com.docker.network.generic": {}},
                "IPv4Data": [{"AddressSpace": self.SPACE, "Pool": pool, "Gateway": gateway}],
                "IPv6Data": [],
            },
        )
        return pool

    def endpoint(self, pool: str, endpoint_id: str) -> str:
        address = self.call("/IpamDriver.RequestAddress", {"PoolID": pool, "Address": "", "Options": {}})
        self.call(
            "/NetworkDriver.CreateEndpoint",
            {"NetworkID": self.NET, "EndpointID": endpoint_id, "Interface": {"Address": address["Address"]}},
        )
        return str(address["Address"])

    def ep(self, path: str, endpoint_id: str) -> dict:
        return self.call(path, {"NetworkID": self.NET, "EndpointID": endpoint_id, "Options": {}})

    def remove(self, pool: str, endpoint_id: str, address: str) -> None:
        self.ep("/NetworkDriver.DeleteEndpoint", endpoint_id)
        self.call("/IpamDriver.ReleaseAddress", {"PoolID": pool, "Address": address.split("/")[0]})
        self.call("/NetworkDriver.DeleteNetwork", {"NetworkID": self.NET})
        self.call("/IpamDriver.ReleasePool", {"PoolID": pool})


def plugin_daemon(lab: Lab, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    """dockyardd serving the plugin socket, started with env (a delayed step)."""
    sock = tmp_path / "plugins" / "dockyard.sock"
    sock.parent.mkdir()
    lab.root.mkdir(parents=True, exist_ok=True)
    (lab.root / "daemon.json").write_text(
        json.dumps({"docker-plugin": True, "docker-plugin-socket": str(sock)})
    )
    cmd = [sys.executable, "-m", "dockyard.daemon.main", "--root", str(lab.root), "--host-netns", lab.host]
    p = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    lab.procs.append(p)
    lab.eventually(lambda: listening(sock), timeout=30, what="the plugin socket served")
    return p, sock


def listening(sock: Path) -> bool:
    """Whether the socket takes a connection: its file exists from bind(), a moment before
    listen(), when a connection is refused."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(sock))
    except OSError:
        return False
    finally:
        conn.close()
    return True


def db_rows(lab: Lab, table: str) -> int:
    db = sqlite3.connect(lab.root / "dockyard.db")
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def test_a_crash_between_leave_and_delete_endpoint_leaves_nothing(lab: Lab, tmp_path: Path) -> None:
    """Leave hands the veth to the reaper (held here): the daemon killed before it ran, the next
    one removes the veth and the endpoint's records at its start, and Docker's DeleteEndpoint,
    retried, then succeeds."""
    daemon, sock = plugin_daemon(lab, tmp_path, {"DOCKYARD_DELAY": "endpoint.reaping=600"})
    before = set(lab.links())  # the daemon's default bridge
    docker = DirectPlugin(sock)
    pool = docker.network("10.93.0.0/24")
    endpoint_id = "e" * 64
    address = docker.endpoint(pool, endpoint_id)
    src = docker.ep("/NetworkDriver.Join", endpoint_id)["InterfaceName"]["SrcName"]
    made = set(lab.links()) - before
    assert src in made and len(made) == 3  # the network's bridge, the veth's two ends
    docker.ep("/NetworkDriver.RevokeExternalConnectivity", endpoint_id)
    docker.ep("/NetworkDriver.Leave", endpoint_id)
    assert set(lab.links()) - before == made  # Leave answered; the veth is still the reaper's
    assert db_rows(lab, "endpoints") == 1

    daemon.kill()
    daemon.wait(timeout=10)
    lab.dy_ok("network", "ls")  # a new dockyardd: its start finishes the release
    lab.eventually(lambda: src not in lab.links(), timeout=10, what="the left veth removed")
    assert db_rows(lab, "endpoints") == 0
    docker.remove(pool, endpoint_id, address)  # Docker's retry
    assert set(lab.links()) == before
    assert db_rows(lab, "attachments") == 0 and db_rows(lab, "docker_pools") == 0
    assert not [n for n in dockyard_networks(lab) if n.startswith("docker-")]


def test_a_join_after_a_leave_gets_the_endpoint_back(lab: Lab, tmp_path: Path) -> None:
    """libnetwork's Sandbox.Refresh calls Leave then Join on one
    endpoint: the Join waits for the reaper (held here at a gate the test opens as it joins)
    and makes the veth again, with the endpoint's address and MAC."""
    gate = tmp_path / "reaper-gate"
    _, sock = plugin_daemon(lab, tmp_path, {"DOCKYARD_DELAY": f"endpoint.reaping={gate}"})
    try:
        _join_after_leave(lab, sock, gate)
    finally:
        gate.touch()  # a failed assertion must not leave the reaper held for the teardown


def _join_after_leave(lab: Lab, sock: Path, gate: Path) -> None:
    before = set(lab.links())
    docker = DirectPlugin(sock)
    pool = docker.network("10.94.0.0/24")
    endpoint_id = "f" * 64
    address = docker.endpoint(pool, endpoint_id)
    info = docker.ep("/NetworkDriver.EndpointOperInfo", endpoint_id)["Value"]
    src = docker.ep("/NetworkDriver.Join", endpoint_id)["InterfaceName"]["SrcName"]
    docker.ep("/NetworkDriver.Leave", endpoint_id)
    assert src in lab.links()  # still the reaper's, held at the gate
    # Opened a moment after the Join is sent: the Join finds the reaper held (or, on a slow
    # machine, through already: the answer must be the same either way).
    opener = threading.Timer(0.5, gate.touch)
    opener.daemon = True
    opener.start()
    assert docker.ep("/NetworkDriver.Join", endpoint_id)["InterfaceName"]["SrcName"] == src
    link = json.loads(lab.in_host("ip", "-j", "link", "show", src).stdout)[0]
    assert link["address"] == info["com.docker.network.endpoint.macaddress"]
    assert docker.ep("/NetworkDriver.EndpointOperInfo", endpoint_id)["Value"] == info
    network = json.loads(lab.dy_ok("network", "inspect", f"docker-{DirectPlugin.NET[:12]}"))[0]
    assert address in json.dumps(network)
    docker.ep("/NetworkDriver.Leave", endpoint_id)
    docker.remove(pool, endpoint_id, address)
    lab.eventually(lambda: set(lab.links()) == before, timeout=20, what="the veth removed")
    assert db_rows(lab, "endpoints") == 0 and db_rows(lab, "attachments") == 0


def test_dockyard_ipam_gives_addresses_next_fit(lab: Lab, tmp_path: Path) -> None:
    """An address given back is not the next one given: its veth may still be on its way out
    (Leave hands it to the reaper), which a CreateEndpoint with it would have to wait for."""
    _, sock = plugin_daemon(lab, tmp_path, {})
    docker = DirectPlugin(sock)
    request = {"AddressSpace": DirectPlugin.SPACE, "Pool": "10.95.0.0/29", "SubPool": "", "Options": {}}
    pool = docker.call("/IpamDriver.RequestPool", {**request, "V6": False})["PoolID"]

    def take() -> str:
        return str(docker.call("/IpamDriver.RequestAddress", {"PoolID": pool, "Options": {}})["Address"])

    def give_back(address: str) -> None:
        docker.call("/IpamDriver.ReleaseAddress", {"PoolID": pool, "Address": address.split("/")[0]})

    first = take()
    give_back(first)
    taken = [take() for _ in range(5)]  # the /29's other five hosts, then the first again
    assert first == "10.95.0.1/29" and taken == [f"10.95.0.{n}/29" for n in (2, 3, 4, 5, 6)]
    give_back(taken[1])
    assert take() == "10.95.0.1/29" and take() == "10.95.0.3/29"  # wrapped around, the free ones
    status, answer = plugin_call(sock, "/IpamDriver.RequestAddress", json.dumps({"PoolID": pool}).encode())
    assert status == 400 and answer == {"Err": "no address left in pool 10.95.0.0/29"}
    for n in range(1, 7):
        give_back(f"10.95.0.{n}")
    docker.call("/IpamDriver.ReleasePool", {"PoolID": pool})


def test_an_ipv6_host_ip_is_refused_by_name_on_an_ipv4_network(lab: Lab, tmp_path: Path) -> None:
    """ProgramExternalConnectivity with an IPv6 HostIP (`::` or an address): the network has no
    IPv6 (dockyard's Docker networks are IPv4 only), so it is refused naming the binding and the
    missing family, in one line of {"Err": ...}, and nothing is published; IPv4 still is."""
    _, sock = plugin_daemon(lab, tmp_path, {})
    docker = DirectPlugin(sock)
    pool = docker.network("10.95.0.0/24")
    endpoint_id = "a" * 64
    address = docker.endpoint(pool, endpoint_id)
    docker.ep("/NetworkDriver.Join", endpoint_id)
    name = f"docker-{DirectPlugin.NET[:12]}"

    def program(host_ip: str) -> tuple[int, dict]:
        binding = {"Proto": 6, "Port": 80, "HostIP": host_ip, "HostPort": 8080}
        body = {"NetworkID": DirectPlugin.NET, "EndpointID": endpoint_id, "Options": {PORTMAP: [binding]}}
        return plugin_call(sock, "/NetworkDriver.ProgramExternalConnectivity", json.dumps(body).encode())

    for host_ip, shown in (("::", "[::]:8080"), ("2001:db8::1", "[2001:db8::1]:8080")):
        status, answer = program(host_ip)
        assert status != 200 and answer == {"Err": f"cannot publish on {shown}: network {name} has no IPv6"}
    status, answer = program("not-an-address")
    assert status != 200 and answer == {
        "Err": "invalid HostIP 'not-an-address': expected an IPv4 or IPv6 address"
    }
    assert lab.map_elements("publish_any6") == [] and lab.map_elements("publish_addr6") == []
    assert lab.map_elements("publish_any") == [] and db_rows(lab, "ports") == 0
    # The same endpoint publishes on IPv4 afterwards: the refusals left nothing reserved.
    assert program(HOST_ADDR) == (200, {})
    assert [item[0]["concat"] for item in lab.map_elements("publish_addr")] == [[HOST_ADDR, "tcp", 8080]]
    docker.ep("/NetworkDriver.RevokeExternalConnectivity", endpoint_id)
    docker.ep("/NetworkDriver.Leave", endpoint_id)
    docker.remove(pool, endpoint_id, address)
    assert lab.map_elements("publish_addr") == []
