"""docker network connect / disconnect against dockyardd (issue 13), with the docker CLI and docker-py:
each EndpointSettings field honoured (aliases resolve, --ip and --ip6 are the addresses, the MAC is
the link's) or refused by name with nothing changed; disconnect's body checked, -f as Docker's."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from docker_cli import DockerCli
from lab import Lab


@pytest.fixture
def docker(lab: Lab, tmp_path: Path) -> DockerCli:
    return DockerCli.for_lab(lab, tmp_path, busybox=True)


def _networks(docker: DockerCli, ref: str) -> dict:
    return json.loads(docker.ok("inspect", ref))[0]["NetworkSettings"]["Networks"]


def _in_sandbox(lab: Lab, docker: DockerCli, ref: str, *cmd: str) -> str:
    sandbox = json.loads(docker.ok("inspect", ref))[0]["NetworkSettings"]["SandboxKey"]
    r = lab.in_host("nsenter", f"--net={sandbox}", *cmd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _resolves(docker: DockerCli, asker: str, name: str) -> list[str]:
    """The addresses busybox's nslookup in `asker` gets for name (none: [])."""
    r = docker.run("exec", asker, "nslookup", name)
    out = r.stdout.decode()
    answers = out.split("Name:", 1)[1] if "Name:" in out else ""
    return sorted(line.split()[-1] for line in answers.splitlines() if line.startswith("Address"))


def test_the_docker_cli_connects_with_aliases_and_static_addresses(lab: Lab, docker: DockerCli) -> None:
    docker.ok("network", "create", "--ipv6", "--subnet", "10.71.0.0/24", "--subnet", "fd00:71::/64", "app")
    docker.ok("run", "-d", "--init", "--name", "asker", "--network", "app", "busybox", "sleep", "300")
    docker.ok("run", "-d", "--init", "--name", "roamer", "busybox", "sleep", "300")
    assert _resolves(docker, "asker", "db") == []
    docker.ok(
        "network", "connect", "--alias", "db", "--alias", "db.internal", "--ip", "10.71.0.50",
        "--ip6", "fd00:71::50", "app", "roamer",
    )  # fmt: skip
    app = _networks(docker, "roamer")["app"]
    assert app["IPAddress"] == "10.71.0.50" and app["GlobalIPv6Address"] == "fd00:71::50"
    assert app["IPAMConfig"] == {"IPv4Address": "10.71.0.50", "IPv6Address": "fd00:71::50"}
    assert {"db", "db.internal"} <= set(app["Aliases"])
    addresses = _in_sandbox(lab, docker, "roamer", "ip", "-o", "addr")
    assert "10.71.0.50/24" in addresses and "fd00:71::50/64" in addresses
    # The aliases are names on that network: the other member's resolver answers them.
    assert "10.71.0.50" in _resolves(docker, "asker", "db")
    assert "10.71.0.50" in _resolves(docker, "asker", "db.internal")
    # Kept for the next start, as Docker keeps it: the same address and names after a restart.
    docker.ok("restart", "-t", "1", "roamer")
    app = _networks(docker, "roamer")["app"]
    assert app["IPAddress"] == "10.71.0.50" and app["GlobalIPv6Address"] == "fd00:71::50"
    assert "10.71.0.50" in _resolves(docker, "asker", "db")
    # disconnect: off the network, the names gone, and it stays off after a restart.
    docker.ok("network", "disconnect", "app", "roamer")
    assert "app" not in _networks(docker, "roamer")
    assert _resolves(docker, "asker", "db") == []
    docker.ok("restart", "-t", "1", "roamer")
    assert set(_networks(docker, "roamer")) == {"bridge"}
    docker.ok("rm", "-f", "asker", "roamer")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--link", "asker:friend"), "EndpointConfig.Links is not supported by dockyard: --link"),
        (("--link-local-ip", "169.254.7.7"), "EndpointConfig.IPAMConfig.LinkLocalIPs is not supported"),
        (("--driver-opt", "com.example.x=1"), "EndpointConfig.DriverOpts is not supported"),
        (("--alias", "bad alias"), "invalid network alias name 'bad alias'"),
        (("--ip", "10.72.0.50", "--alias", "ok-alias"), "10.72.0.50"),  # out of the subnet: the engine's
    ],
)
def test_the_docker_cli_connect_refusals_change_nothing(
    docker: DockerCli, flags: tuple, message: str
) -> None:
    docker.ok("network", "create", "--subnet", "10.71.0.0/24", "app")
    docker.ok("run", "-d", "--init", "--name", "asker", "--network", "app", "busybox", "sleep", "300")
    docker.ok("create", "--name", "later", "busybox", "sleep", "300")
    docker.ok("run", "-d", "--init", "--name", "roamer", "busybox", "sleep", "300")
    for target in ("roamer", "later"):  # running: now; created: at its start
        docker.fails("network", "connect", *flags, "app", target, message=message)
        assert "app" not in _networks(docker, target)
    docker.ok("start", "later")
    assert set(_networks(docker, "later")) == {"bridge"}
    assert _resolves(docker, "asker", "ok-alias") == []
    docker.ok("rm", "-f", "asker", "roamer", "later")


def test_raw_connect_and_disconnect_bodies_are_refused_by_name(docker: DockerCli) -> None:
    docker.ok("network", "create", "--subnet", "10.71.0.0/24", "app")
    docker.ok("run", "-d", "--init", "--name", "roamer", "busybox", "sleep", "300")
    for body, message in [
        ({"Container": "roamer", "Frob": 1}, b"Frob is not a field dockyard knows"),
        ({"Container": "roamer", "EndpointConfig": {"IPAddress": "10.71.0.9"}}, b"EndpointConfig.IPAddress"),
        ({"Container": "roamer", "EndpointConfig": {"GwPriority": 5}}, b"EndpointConfig.GwPriority"),
        ({"Container": "roamer", "EndpointConfig": {"MacAddress": "zz"}}, b"invalid MAC address 'zz'"),
        ({"EndpointConfig": {}}, b"Container is required"),
    ]:
        status, answer = docker.api("POST", "/networks/app/connect", body)
        assert status == 400 and message in answer, (body, status, answer)
        assert b"\\n" not in answer
        assert "app" not in _networks(docker, "roamer")
    # What Docker's clients send at zero (the output fields among them) is accepted.
    zeros = {
        "NetworkID": "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "DNSNames": None,
    }
    status, answer = docker.api(
        "POST", "/networks/app/connect", {"Container": "roamer", "EndpointConfig": zeros}
    )
    assert status == 200, answer
    assert "app" in _networks(docker, "roamer")
    for body, message in [
        ({"Container": "roamer", "Frob": True}, b"Frob is not a field dockyard knows"),
        ({"Container": "roamer", "Force": "yes"}, b"Force must be true or false"),
        ({"Force": True}, b"Container is required"),
    ]:
        status, answer = docker.api("POST", "/networks/app/disconnect", body)
        assert status == 400 and message in answer, (body, status, answer)
        assert "app" in _networks(docker, "roamer")
    docker.ok("rm", "-f", "roamer")


def test_docker_py_connects_with_aliases_address_and_mac(lab: Lab, docker: DockerCli) -> None:
    docker_py = pytest.importorskip("docker")
    docker.ok("network", "create", "--subnet", "10.73.0.0/24", "app")
    docker.ok("run", "-d", "--init", "--name", "asker", "--network", "app", "busybox", "sleep", "300")
    client = docker_py.DockerClient(base_url=f"unix://{lab.root}/dockyard.sock", version="1.41")
    try:
        c = client.containers.run("busybox", ["sleep", "300"], name="roamer", detach=True, init=True)
        net = client.networks.get("app")
        for kwargs, message in [
            ({"links": [("asker", "friend")]}, "EndpointConfig.Links is not supported"),
            ({"link_local_ips": ["169.254.7.7"]}, "EndpointConfig.IPAMConfig.LinkLocalIPs is not supported"),
            ({"driver_opt": {"x": "1"}}, "EndpointConfig.DriverOpts is not supported"),
            ({"aliases": ["x"]}, "invalid network alias name 'x'"),
            ({"mac_address": "01:00:5e:00:00:01"}, "multicast"),
        ]:
            with pytest.raises(docker_py.errors.APIError) as info:
                net.connect(c, ipv4_address="10.73.0.60", **kwargs)
            assert info.value.status_code == 400 and message in str(info.value), (kwargs, info.value)
            c.reload()
            assert "app" not in c.attrs["NetworkSettings"]["Networks"]
        net.connect(c, aliases=["cache"], ipv4_address="10.73.0.60", mac_address="02:42:0a:49:00:3c")
        c.reload()
        app = c.attrs["NetworkSettings"]["Networks"]["app"]
        assert app["IPAddress"] == "10.73.0.60" and app["MacAddress"] == "02:42:0a:49:00:3c"
        assert "cache" in app["Aliases"]
        ifname = next(
            line.split()[1].split("@")[0].rstrip(":")
            for line in _in_sandbox(lab, docker, "roamer", "ip", "-o", "addr").splitlines()
            if " 10.73.0.60/" in line
        )
        assert "02:42:0a:49:00:3c" in _in_sandbox(lab, docker, "roamer", "ip", "-o", "link", "show", ifname)
        assert _resolves(docker, "asker", "cache") == ["10.73.0.60"]
        net.disconnect(c)
        c.reload()
        assert "app" not in c.attrs["NetworkSettings"]["Networks"]
        c.remove(force=True)
    finally:
        client.close()
    docker.ok("rm", "-f", "asker")


def test_disconnect_force_deletes_the_endpoint_a_gone_container_left(lab: Lab, docker: DockerCli) -> None:
    """Docker's -f: a container the daemon no longer knows (here: its record lost) still holds an
    endpoint; disconnect -f deletes it, and without -f the container is not found."""
    docker.ok("network", "create", "--subnet", "10.74.0.0/24", "app")
    cid = docker.ok(
        "run",
        "-d",
        "--init",
        "--name",
        "lost",
        "--network",
        "app",
        "--ip",
        "10.74.0.9",
        "busybox",
        "sleep",
        "300",
    ).strip()
    pid = json.loads(docker.ok("inspect", "lost"))[0]["State"]["Pid"]
    db = sqlite3.connect(lab.root / "dockyard.db")
    with db:
        db.execute("DELETE FROM containers WHERE id=?", (cid,))
    db.close()
    try:
        docker.fails("network", "disconnect", "app", cid, message="no such container")
        # The address is still held: the endpoint is there (docker run created taker, its start failed).
        docker.fails(
            "run",
            "-d",
            "--name",
            "taker",
            "--network",
            "app",
            "--ip",
            "10.74.0.9",
            "busybox",
            "true",
            message="10.74.0.9",
        )
        docker.fails(
            "network", "disconnect", "-f", "app", "nosuch", message="no endpoint of it on network app"
        )
        docker.ok("network", "disconnect", "-f", "app", cid)
        docker.ok(
            "run",
            "-d",
            "--init",
            "--name",
            "taker2",
            "--network",
            "app",
            "--ip",
            "10.74.0.9",
            "busybox",
            "true",
        )
        docker.ok("rm", "-f", "taker", "taker2")
    finally:
        os.kill(pid, signal.SIGKILL)
        lab.eventually(lambda: not Path(f"/proc/{pid}").exists(), what="the lost container's process gone")
        lab.dy_ok("system", "gc")
    docker.ok("network", "rm", "app")


def test_aliases_on_the_default_bridge_are_refused_as_docker_does(docker: DockerCli) -> None:
    # The docker CLI refuses it before asking (its words); another client's body gets the same from the daemon.
    docker.fails(
        "run", "-d", "--network-alias", "web", "busybox", "sleep", "300",
        message="network-scoped aliases are only supported for user-defined networks",
    )  # fmt: skip
    body = {
        "Image": "busybox",
        "Cmd": ["sleep", "300"],
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["web"]}}},
    }
    status, answer = docker.api("POST", "/containers/create?name=aliased", body)
    assert status == 400 and b"network-scoped aliases are only supported for user-defined networks" in answer
    assert docker.ok("ps", "-aq") == ""
