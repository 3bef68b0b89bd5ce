"""Docker's own clients against dockyardd (issue 13): filters never ignored, every create field
honoured or refused, the endpoints they call. The docker CLI (DOCKER_HOST at the lab's socket)
and docker-py are the judges.

Containers run on a busybox image each test imports (busybox-static's applets).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from docker_cli import DOCKER, DockerCli
from lab import Lab


@pytest.fixture
def docker(lab: Lab, tmp_path: Path) -> DockerCli:
    # The image every test runs: busybox-static's applets (containers run on it).
    return DockerCli.for_lab(lab, tmp_path, busybox=True)


def _names(out: str) -> list[str]:
    return sorted(out.split())


def test_ps_filters_are_never_ignored(lab: Lab, docker: DockerCli) -> None:
    docker.ok("network", "create", "front")
    up = docker.ok(
        "run", "-d", "--name", "up", "--label", "tier=web", "--network", "front", "busybox", "sleep", "300"
    )
    docker.ok("run", "-d", "--name", "done", "--label", "tier=db", "busybox", "true")
    docker.ok("run", "-d", "--name", "failed", "busybox", "sh", "-c", "exit 3")
    docker.ok("create", "--name", "new", "busybox", "true")
    lab.eventually(
        lambda: docker.ok("ps", "-aq", "-f", "status=exited").split().__len__() == 2, what="two exited"
    )
    # The one that matters most: `docker rm -f $(docker ps -aq -f status=exited)` spares running ones.
    assert _names(docker.ok("ps", "-a", "-f", "status=exited", "--format", "{{.Names}}")) == [
        "done",
        "failed",
    ]
    assert _names(docker.ok("ps", "-f", "status=running", "--format", "{{.Names}}")) == ["up"]
    assert _names(docker.ok("ps", "-a", "-f", "status=created", "--format", "{{.Names}}")) == ["new"]
    assert _names(docker.ok("ps", "-a", "-f", "exited=3", "--format", "{{.Names}}")) == ["failed"]
    assert _names(docker.ok("ps", "-a", "-f", "label=tier", "--format", "{{.Names}}")) == ["done", "up"]
    assert _names(docker.ok("ps", "-a", "-f", "label=tier=db", "--format", "{{.Names}}")) == ["done"]
    assert _names(docker.ok("ps", "-a", "-f", "name=^/do", "--format", "{{.Names}}")) == ["done"]
    assert _names(docker.ok("ps", "-a", "-f", f"id={up[:10]}", "--format", "{{.Names}}")) == ["up"]
    assert _names(docker.ok("ps", "-a", "-f", "network=front", "--format", "{{.Names}}")) == ["up"]
    assert _names(docker.ok("ps", "-a", "-f", "before=new", "--format", "{{.Names}}")) == [
        "done",
        "failed",
        "up",
    ]
    assert _names(docker.ok("ps", "-a", "-f", "since=failed", "--format", "{{.Names}}")) == ["new"]
    assert _names(docker.ok("ps", "-a", "-f", "ancestor=busybox", "--format", "{{.Names}}")) == [
        "done", "failed", "new", "up"
    ]  # fmt: skip
    assert len(docker.ok("ps", "-a", "-n", "2", "-q").split()) == 2
    docker.fails("ps", "-f", "color=red", message="invalid filter 'color'")
    docker.fails("ps", "-f", "status=sleepy", message="invalid filter 'status=sleepy'")
    # The image is shown where Docker shows it.
    assert docker.ok("ps", "-f", "name=up", "--format", "{{.Image}}").strip() == "busybox"
    info = json.loads(docker.ok("inspect", "up"))[0]
    assert info["Config"]["Image"] == "busybox" and info["Image"].startswith("sha256:")
    # Prune takes the stopped ones only, by label when asked.
    docker.fails("container", "prune", "-f", "--filter", "color=red", message="invalid filter 'color'")
    out = docker.ok("container", "prune", "-f", "--filter", "label=tier=db")
    assert "Deleted Containers" in out
    assert _names(docker.ok("ps", "-a", "--format", "{{.Names}}")) == ["failed", "new", "up"]
    docker.ok("container", "prune", "-f")
    assert _names(docker.ok("ps", "-a", "--format", "{{.Names}}")) == ["up"]
    docker.ok("rm", "-f", "up")


def test_network_filters_and_prune_by_label(lab: Lab, docker: DockerCli) -> None:
    docker.ok("network", "create", "--label", "keep=yes", "kept")
    docker.ok("network", "create", "--label", "keep=no", "gone")
    docker.ok("network", "create", "used")
    docker.ok("run", "-d", "--name", "user", "--network", "used", "busybox", "sleep", "300")
    dangling = docker.ok("network", "ls", "--filter", "dangling=true", "--format", "{{.Name}}")
    assert _names(dangling) == ["gone", "kept"]
    assert "bridge" in docker.ok("network", "ls", "--filter", "scope=local", "--format", "{{.Name}}")
    docker.fails("network", "ls", "--filter", "color=red", message="invalid filter 'color'")
    docker.ok("network", "prune", "-f", "--filter", "label=keep=no")
    names = _names(docker.ok("network", "ls", "--format", "{{.Name}}"))
    assert "gone" not in names and "kept" in names and "used" in names
    docker.ok("network", "prune", "-f", "--filter", "label!=keep=yes")
    assert "kept" in docker.ok("network", "ls", "--format", "{{.Name}}")
    docker.ok("network", "prune", "-f", "--filter", "until=1h")  # made just now: kept
    assert "kept" in docker.ok("network", "ls", "--format", "{{.Name}}")
    docker.ok("rm", "-f", "user")
    docker.ok("network", "prune", "-f")
    assert _names(docker.ok("network", "ls", "--format", "{{.Name}}")) == ["bridge", "host", "none"]


def test_unknown_and_unsupported_create_fields_are_refused_by_name(lab: Lab, docker: DockerCli) -> None:
    docker.fails(
        "run", "-d", "--memory", "64m", "busybox", "true", message="HostConfig.Memory is not supported"
    )
    docker.fails("run", "-d", "--read-only", "busybox", "true", message="HostConfig.ReadonlyRootfs")
    docker.fails("run", "-d", "--tmpfs", "/x", "busybox", "true", message="HostConfig.Tmpfs")
    docker.fails(
        "run", "-d", "-v", "named:/data", "busybox", "true", message="named volumes are not supported"
    )
    docker.fails("run", "-d", "--sysctl", "kernel.msgmax=1", "busybox", "true", message="kernel.msgmax")
    docker.fails("run", "-d", "--restart", "sometimes", "busybox", "true", message="invalid restart policy")
    docker.fails("run", "-d", "--restart", "always", "--rm", "busybox", "true", message="--restart and --rm")
    # A field Docker does not have, with a value: refused too, never dropped.
    body = {"Image": "busybox", "Cmd": ["true"], "Frobnicate": True, "HostConfig": {"Memory": 0}}
    status, answer = docker.api("POST", "/containers/create", body)
    assert status == 400 and b"Frobnicate is not a field dockyard knows" in answer
    # A second subnet of one family: Docker's own bridge driver refuses it, in these words.
    docker.fails(
        "network",
        "create",
        "--subnet",
        "10.61.0.0/24",
        "--subnet",
        "10.62.0.0/24",
        "two",
        message="bridge driver doesn't support multiple subnets",
    )
    # Nothing was made by any of them; the defaults every docker CLI sends are accepted.
    assert docker.ok("ps", "-aq") == ""
    assert "two" not in docker.ok("network", "ls", "--format", "{{.Name}}").split()
    docker.ok("create", "--name", "plain", "busybox", "true")


def test_labels_binds_hosts_sysctls_mac_and_stop_signal(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "hello").write_text("from the host\n")
    script = (
        "cat /data/hello > /out/seen; touch /data/written 2>/dev/null; echo $? > /out/rc; "
        "cat /etc/hosts > /out/hosts; cat /proc/sys/net/ipv4/ip_unprivileged_port_start > /out/sysctl; "
        "cat /sys/class/net/eth0/address > /out/mac; sleep 300"
    )
    docker.ok(
        "run", "-d", "--name", "box", "--init", "--label", "a=1", "--label", "b=two words",
        "-v", f"{src}:/data:ro", "--mount", f"type=bind,source={out},target=/out",
        "--add-host", "db.example:10.1.2.3", "--sysctl", "net.ipv4.ip_unprivileged_port_start=53",
        "--stop-signal", "SIGUSR1",
        "--stop-timeout", "3", "busybox", "sh", "-c", script,
    )  # fmt: skip
    lab.eventually(lambda: (out / "mac").exists() and (out / "mac").read_text() != "", what="the script ran")
    assert (out / "seen").read_text() == "from the host\n"
    assert (out / "rc").read_text().strip() != "0" and not (src / "written").exists()  # read-only
    assert "10.1.2.3\tdb.example" in (out / "hosts").read_text()
    assert (out / "sysctl").read_text().strip() == "53"
    info = json.loads(docker.ok("inspect", "box"))[0]
    assert info["Config"]["Labels"] == {"a": "1", "b": "two words"}
    assert info["Config"]["StopSignal"] == "SIGUSR1" and info["Config"]["StopTimeout"] == 3
    assert info["HostConfig"]["ExtraHosts"] == ["db.example:10.1.2.3"]
    assert info["HostConfig"]["Sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "53"}
    assert {m["Destination"]: m["RW"] for m in info["Mounts"]} == {"/data": False, "/out": True}
    assert docker.ok("ps", "--format", '{{.Label "b"}}').strip() == "two words"
    # The host's tree is untouched by the container's mount points.
    assert not Path("/out").exists() or Path("/out").stat().st_ino != out.stat().st_ino
    docker.ok("rm", "-f", "box")


def test_several_networks_at_create_and_connect_before_start(lab: Lab, docker: DockerCli) -> None:
    docker_py = pytest.importorskip("docker")
    docker.ok("network", "create", "--subnet", "10.62.0.0/24", "one")
    docker.ok("network", "create", "--subnet", "10.63.0.0/24", "two")
    client = docker_py.DockerClient(base_url=f"unix://{lab.root}/dockyard.sock", version="1.41")
    try:
        # The docker CLI 28 sends --mac-address per network, which needs API 1.44: docker-py's is top-level.
        c = client.containers.create(
            "busybox",
            ["sleep", "300"],
            name="multi",
            network="one",
            init=True,
            mac_address="02:42:0a:3e:00:77",
        )
        # Compose's way: connected while created, joined at start.
        client.networks.get("two").connect(c, ipv4_address="10.63.0.9", aliases=["second"])
        c.start()
        c.reload()
        nets = c.attrs["NetworkSettings"]["Networks"]
        assert set(nets) == {"one", "two"}
        assert nets["two"]["IPAddress"] == "10.63.0.9"
        assert nets["two"]["IPAMConfig"] == {"IPv4Address": "10.63.0.9"}
        addresses = lab.in_host(
            "nsenter", f"--net={c.attrs['NetworkSettings']['SandboxKey']}", "ip", "-4", "-o", "addr"
        ).stdout
        assert "10.63.0.9/24" in addresses and "10.62.0." in addresses
        assert nets["one"]["MacAddress"] == "02:42:0a:3e:00:77"
        link = lab.in_host(
            "nsenter", f"--net={c.attrs['NetworkSettings']['SandboxKey']}", "ip", "-o", "link", "show", "eth0"
        )
        assert "02:42:0a:3e:00:77" in link.stdout
        # docker-py's filters reach the daemon and are applied.
        assert [x.name for x in client.containers.list(filters={"name": "multi"})] == ["multi"]
        assert client.containers.list(filters={"name": "nosuch"}) == []
        assert [x.name for x in client.containers.list(filters={"network": "two"})] == ["multi"]
        c.remove(force=True)
    finally:
        client.close()


def test_a_missing_network_is_reported_as_one(lab: Lab, docker: DockerCli) -> None:
    err = docker.fails(
        "run", "-d", "--network", "nosuch", "busybox", "true", message="network nosuch not found"
    )
    assert "Unable to find image" not in err
    docker.fails("run", "-d", "--ip", "172.17.0.9", "busybox", "true", message="user specified IP address")


def test_api_versions_outside_the_range_are_refused_as_docker_does(lab: Lab, docker: DockerCli) -> None:
    docker.env["DOCKER_API_VERSION"] = "9.99"
    docker.fails("ps", message="client version 9.99 is too new. Maximum supported API version is 1.41")
    docker.env["DOCKER_API_VERSION"] = "1.12"
    docker.fails("ps", message="client version 1.12 is too old. Minimum supported API version is 1.24")
    del docker.env["DOCKER_API_VERSION"]
    info = json.loads(docker.ok("info", "--format", "{{json .}}"))
    assert info["NCPU"] == len(os.sched_getaffinity(0)) and info["MemTotal"] > 0


def test_events_restart_rename_top_and_wait(lab: Lab, docker: DockerCli) -> None:
    since = str(int(time.time()) - 1)
    docker.ok("run", "-d", "--name", "brief", "busybox", "true")
    lab.eventually(lambda: "exited" in docker.ok("ps", "-a", "--format", "{{.State}}"), what="exit")
    docker.ok("run", "-d", "--init", "--name", "long", "busybox", "sleep", "300")
    lab.init_ready("long")
    top = docker.ok("top", "long")
    assert "sleep 300" in top
    docker.ok("rename", "long", "longer")
    assert docker.ok("restart", "-t", "1", "longer").strip() == "longer"
    assert json.loads(docker.ok("inspect", "longer"))[0]["State"]["Running"]
    until = str(int(time.time()) + 1)
    out = docker.ok("events", "--since", since, "--until", until, "--format", "{{json .}}")
    events = [json.loads(line) for line in out.splitlines()]
    brief = [e["Action"] for e in events if e["Actor"]["Attributes"].get("name") == "brief"]
    assert brief[:3] == ["create", "start", "die"], events
    assert any(e["Action"] == "rename" for e in events) and any(e["Action"] == "restart" for e in events)
    out = docker.ok(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.exitCode}}",
    )
    assert out.split()[0] == "0"
    docker.fails(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        "color=red",
        message="invalid filter 'color'",
    )
    docker.ok("rm", "-f", "longer", "brief")


def test_restart_policies_after_exit_and_after_a_daemon_restart(
    lab: Lab, docker: DockerCli, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    docker.ok(
        "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "-v", f"{runs}:/runs",
        "busybox", "sh", "-c", "echo x >> /runs/flaky; exit 1",
    )  # fmt: skip
    lab.eventually(lambda: (runs / "flaky").read_text().count("x") == 3, timeout=20, what="three runs")
    lab.eventually(
        lambda: json.loads(docker.ok("inspect", "flaky"))[0]["State"]["Status"] == "exited", timeout=10
    )
    time.sleep(0.5)  # no fourth run comes: the back-off of the third would have been 0.4 s
    assert (runs / "flaky").read_text().count("x") == 3
    assert json.loads(docker.ok("inspect", "flaky"))[0]["RestartCount"] == 2
    docker.ok("run", "-d", "--name", "always", "--init", "--restart", "always", "busybox", "sleep", "300")
    docker.ok(
        "run", "-d", "--name", "unless", "--init", "--restart", "unless-stopped", "busybox", "sleep", "300"
    )
    lab.init_ready("unless")
    docker.ok("stop", "-t", "1", "unless")
    pid = json.loads(docker.ok("inspect", "always"))[0]["State"]["Pid"]
    # The daemon goes, its container dies meanwhile (as in a reboot): the next daemon starts it again.
    lab.dy_ok("daemon", "stop")
    os.kill(pid, 9)
    lab.eventually(lambda: not Path(f"/proc/{pid}").exists(), what="the process gone")
    lab.dy_ok("ps")
    lab.eventually(
        lambda: json.loads(docker.ok("inspect", "always"))[0]["State"]["Running"],
        timeout=20,
        what="restarted",
    )
    assert json.loads(docker.ok("inspect", "always"))[0]["State"]["Pid"] != pid
    assert not json.loads(docker.ok("inspect", "unless"))[0]["State"]["Running"]
    docker.ok("rm", "-f", "always", "unless", "flaky")


def test_dockyards_own_cli_has_the_same_flags(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lab.dy_ok("network", "create", "--subnet", "10.67.0.0/24", "--label", "keep=no", "first")
    lab.dy_ok("network", "create", "--subnet", "10.68.0.0/24", "second")
    lab.dy_ok("network", "create", "--label", "keep=no", "spare")
    script = "cat /etc/hosts > /out/hosts; ip -o link > /out/links; sleep 300"
    lab.run_d(
        "--name", "flags", "--init", "--label", "role=test", "-v", f"{out}:/out", "--restart", "unless-stopped",
        "--add-host", "db.example:10.1.2.3", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
        "--net", "first", "--net", "second", "--mac-address", "02:42:0a:43:00:05", "sh", "-c", script,
    )  # fmt: skip
    lab.eventually(lambda: (out / "links").exists() and "eth1" in (out / "links").read_text(), what="links")
    assert "02:42:0a:43:00:05" in (out / "links").read_text()
    assert "10.1.2.3\tdb.example" in (out / "hosts").read_text()
    info = lab.inspect("flags")
    assert info["Config"]["Labels"] == {"role": "test"}
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert set(info["NetworkSettings"]["Networks"]) == {"first", "second"}
    assert lab.dy_ok("ps", "-q", "-f", "label=role=test").split() == [info["Id"][:12]]
    assert lab.dy_ok("ps", "-q", "-f", "label=role=other").split() == []
    r = lab.dy("ps", "-f", "color=red")
    assert r.returncode == 125 and "invalid filter 'color'" in r.stderr
    assert "sleep 300" in lab.dy_ok("top", "flags")
    lab.dy_ok("rename", "flags", "renamed")
    lab.dy_ok("restart", "-t", "1", "renamed")
    assert lab.inspect("renamed")["State"]["Running"]
    lab.dy_ok("network", "prune", "--filter", "label=keep=no")
    names = lab.dy_ok("network", "ls")
    assert "spare" not in names and "first" in names  # in use: kept
    lab.dy_ok("rm", "-f", "renamed")
    lab.run_d("--name", "ended", "true")
    lab.eventually(lambda: "Exited" in lab.dy_ok("ps", "-a"), what="exit")
    assert "Deleted Containers" in lab.dy_ok("container", "prune", "-f")
    assert lab.dy_ok("ps", "-aq") == ""


def test_network_names_as_docker_decides(lab: Lab, docker: DockerCli) -> None:
    # libnetwork's rule: spaces between word characters, not at the ends.
    docker.ok("network", "create", "test 01")
    docker.ok("run", "-d", "--init", "--name", "spaced", "--network", "test 01", "busybox", "sleep", "300")
    info = json.loads(docker.ok("inspect", "spaced"))[0]
    assert info["NetworkSettings"]["Networks"]["test 01"]["IPAddress"]
    assert _names(docker.ok("ps", "-q", "-f", "network=test 01")) == [info["Id"][:12]]
    docker.fails("network", "create", "trailing ", message="invalid network name")
    docker.fails("network", "create", "a/b", message="invalid network name")
    docker.ok("rm", "-f", "spaced")
    docker.ok("network", "rm", "test 01")
    # A non-member's disconnect fails, -f or not (Docker's error).
    docker.ok("network", "create", "other")
    docker.ok("run", "-d", "--init", "--name", "outsider", "busybox", "sleep", "300")
    docker.fails(
        "network", "disconnect", "-f", "other", "outsider", message="is not connected to network other"
    )
    docker.ok("rm", "-f", "outsider")


def test_a_followed_event_stream_and_the_stop_signal(lab: Lab, docker: DockerCli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # --since a moment before: the events of the run are there even if the follower subscribes late.
    since = f"{time.time() - 1:.3f}"
    follower = subprocess.Popen(
        [DOCKER, "events", "--since", since, "--filter", "container=signalled", "--format", "{{.Action}}"],
        stdout=subprocess.PIPE,
        text=True,
        env=docker.env,
    )
    try:
        script = 'trap "echo got > /out/sig; exit 0" USR1; echo up > /out/up; while true; do sleep 0.1; done'
        docker.ok(
            "run", "-d", "--name", "signalled", "--stop-signal", "USR1", "-v", f"{out}:/out",
            "busybox", "sh", "-c", script,
        )  # fmt: skip
        lab.eventually(lambda: (out / "up").exists(), what="the trap set")
        docker.ok("stop", "-t", "30", "signalled")
        # SIGUSR1, not SIGTERM: the trap ran and the container exited 0 long before the 30 s.
        assert (out / "sig").read_text() == "got\n"
        assert json.loads(docker.ok("inspect", "signalled"))[0]["State"]["ExitCode"] == 0
        docker.ok("rm", "signalled")
        assert follower.stdout is not None
        seen: list[str] = []
        # Read by a thread: the wait for the fifth line is bounded, never a test that hangs.
        lines = follower.stdout
        reader = threading.Thread(
            target=lambda: seen.extend(x.strip() for x in itertools.islice(lines, 5)), daemon=True
        )
        reader.start()
        reader.join(30)
        assert seen == ["create", "start", "die", "stop", "destroy"], seen
    finally:
        follower.kill()
        follower.wait()
