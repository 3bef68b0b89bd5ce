"""The command line as Docker users type it: flag spellings, where options end, the root
from the environment, --host-netns as a path, and the networks that always exist."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from lab import DOCKYARD, Lab


def _links(out: str) -> list[str]:
    return [link["ifname"] for link in json.loads(out)]


def test_net_and_network_are_the_same_option(lab: Lab) -> None:
    for spelling in (["--net", "none"], ["--network", "none"], ["--net=none"], ["--network=none"]):
        assert _links(lab.dy_ok("run", "--rm", *spelling, "ip", "-j", "link")) == ["lo"], spelling
    assert "up0" in _links(lab.dy_ok("run", "--rm", "--network", "host", "ip", "-j", "link"))
    assert _links(lab.dy_ok("run", "--rm", "--network=bridge", "ip", "-j", "link")) == ["lo", "eth0"]


def test_options_end_at_the_first_word_of_the_command(lab: Lab) -> None:
    # -d after the command's first word is the command's: the run stays in the foreground.
    assert lab.dy_ok("run", "--rm", "sh", "-c", "echo -d") == "-d\n"
    assert lab.dy_ok("run", "--rm", "echo", "-d", "--name", "x", "-p", "80:80") == "-d --name x -p 80:80\n"
    assert lab.dy("inspect", "x").returncode == 125
    assert lab.map_elements("publish_any") == []
    # `--` ends them too, and what follows is the command even when it looks like an option.
    assert lab.dy_ok("run", "--rm", "--", "echo", "hi") == "hi\n"
    assert lab.dy_ok("run", "--rm", "--name", "dashes", "--", "sh", "-c", "echo $0 $1", "-d", "--rm") == (
        "-d --rm\n"
    )
    assert lab.dy_ok("ps", "-aq") == ""


def test_dockyard_root_comes_from_the_environment(lab: Lab) -> None:
    lab.dy_ok("ps")
    env = {**os.environ, "DOCKYARD_ROOT": str(lab.root)}

    def dy_env(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DOCKYARD, "--host-netns", lab.host, *args], capture_output=True, text=True, env=env, timeout=60
        )

    # `daemon status` only asks (it never starts a daemon): it answers for the lab's root.
    status = dy_env("daemon", "status")
    pid = int((lab.root / "dockyardd.pid").read_text())
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == f"dockyardd is running (pid {pid}) for {lab.root}"
    r = dy_env("run", "-d", "--name", "from-env", "sleep", "300")
    assert r.returncode == 0, r.stderr
    assert lab.inspect("from-env")["Id"] == r.stdout.strip()
    # --root wins over the environment.
    other = lab.root.parent / "elsewhere"
    r = dy_env("--root", str(other), "daemon", "status")
    assert r.returncode == 1 and f"not running for {other}" in r.stderr


def test_host_netns_given_as_a_path(lab: Lab) -> None:
    path = f"/run/netns/{lab.host}"
    cmd = [*DOCKYARD, "--root", str(lab.root), "--host-netns", path]
    # The first command starts the daemon, in the namespace that path names.
    r = subprocess.run(
        [*cmd, "run", "--rm", "--net", "host", "ip", "-j", "link"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "up0" in _links(r.stdout)
    pid = int((lab.root / "dockyardd.pid").read_text())
    assert os.readlink(f"/proc/{pid}/ns/net") == f"net:[{os.stat(path).st_ino}]"
    assert path in Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    r = subprocess.run([*cmd, "run", "-d", "sleep", "300"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "dockyard0" in lab.links() and any(name.startswith("veth") for name in lab.links())


def test_network_inspect_host_and_none(lab: Lab) -> None:
    listed = {line.split()[1]: line.split()[0] for line in lab.dy_ok("network", "ls").splitlines()[1:]}
    both = json.loads(lab.dy_ok("network", "inspect", "host", "none"))
    assert [n["Name"] for n in both] == ["host", "none"]
    for n, driver in zip(both, ("host", "null"), strict=True):
        assert n["Driver"] == driver and n["Scope"] == "local"
        assert n["IPAM"]["Config"] == []
        assert n["Id"].startswith(listed[n["Name"]]) and len(n["Id"]) == 64
        # By id as well as by name.
        assert json.loads(lab.dy_ok("network", "inspect", n["Id"][:12]))[0]["Name"] == n["Name"]


def test_host_and_none_containers_are_listed_on_their_networks(lab: Lab) -> None:
    """As Docker: the host and none networks list their running containers, with no
    address, and each container's inspect names that network."""
    on_host = lab.run_d("--name", "on-host", "--net", "host", "sleep", "300")
    on_none = lab.run_d("--name", "on-none", "--net", "none", "sleep", "300")
    lab.run_d("--name", "on-bridge", "sleep", "300")
    host, none = json.loads(lab.dy_ok("network", "inspect", "host", "none"))
    assert list(host["Containers"]) == [on_host] and list(none["Containers"]) == [on_none]
    entry = host["Containers"][on_host]
    assert entry["Name"] == "on-host" and entry["IPv4Address"] == "" and len(entry["EndpointID"]) == 64
    networks = lab.inspect("on-host")["NetworkSettings"]["Networks"]
    assert list(networks) == ["host"]
    assert networks["host"]["NetworkID"] == host["Id"] and networks["host"]["IPAddress"] == ""
    assert networks["host"]["EndpointID"] == entry["EndpointID"]
    assert list(lab.inspect("on-none")["NetworkSettings"]["Networks"]) == ["none"]
    lab.dy_ok("stop", "-t", "0", "on-host")
    assert json.loads(lab.dy_ok("network", "inspect", "host"))[0]["Containers"] == {}


def test_a_reader_that_leaves_is_not_an_error(lab: Lab) -> None:
    """`dockyard ps | head -1` when head has already gone: exit 0, nothing on stderr."""
    lab.run_d("--name", "listed", "sleep", "300")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(
            [*DOCKYARD, "--root", str(lab.root), "--host-netns", lab.host, "ps", "-a"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (0, "")
    # Nothing else was harmed: the next command lists the container.
    assert lab.dy_ok("ps", "-q").strip()
