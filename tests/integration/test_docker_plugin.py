"""dockyard as Docker's network and IPAM plugin (issue 17), driven through the real docker CLI.

A private dockerd (tests/docker_lab.py) runs in the lab's host namespace and
finds dockyardd's plugin socket in its /run/docker/plugins; busybox is
imported into it. Ports are reached from the upstream namespace.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_lab import PrivateDockerd, busybox_rootfs, why_not
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
    d = PrivateDockerd(lab.host, plugins)
    try:
        d.start()
        r = d.docker("import", "-c", "ENV PATH=/bin", "-", "busybox", input=busybox_rootfs(), timeout=300)
        assert r.returncode == 0, r.stderr
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
