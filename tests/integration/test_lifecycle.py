"""Lifecycle: exit statuses, stdio and signals, stop/rm, and what the daemon does when things die."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from dockyard.kernel import netns
from lab import DOCKYARD, HOST_ADDR, UP_ADDR, Lab, pid_alive


def _veths(lab: Lab) -> list[str]:
    return [name for name in lab.links() if name.startswith("veth")]


def test_exit_status_is_the_command_status(lab: Lab) -> None:
    assert lab.dy("run", "--rm", "sh", "-c", "exit 3").returncode == 3
    assert lab.dy("run", "--rm", "true").returncode == 0
    # PID 1 cannot be killed from inside its PID namespace (Docker alike): under --init it can.
    assert lab.dy("run", "--rm", "sh", "-c", "kill -9 $$").returncode == 0
    assert lab.dy("run", "--rm", "--init", "sh", "-c", "kill -9 $$").returncode == 137


def test_foreground_run_uses_the_callers_stdio(lab: Lab) -> None:
    r = lab.dy("run", "--rm", "sh", "-c", "cat; echo to-stderr >&2", input="hello from stdin\n")
    assert r.returncode == 0
    assert r.stdout == "hello from stdin\n"
    assert r.stderr == "to-stderr\n"


def test_detached_run_prints_the_id_and_logs_the_output(lab: Lab) -> None:
    cid = lab.run_d("--name", "chatty", "sh", "-c", "echo out; echo err >&2")
    assert len(cid) == 64 and all(c in "0123456789abcdef" for c in cid)
    lab.eventually(lambda: lab.inspect("chatty")["State"]["Status"] == "exited", what="exit")
    r = lab.dy("logs", "chatty")
    # As docker logs: stdout to stdout, stderr to stderr.
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")


def test_signals_are_forwarded_to_the_container(lab: Lab) -> None:
    script = (
        "import signal,sys,time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    cmd = [
        *DOCKYARD,
        "--root",
        str(lab.root),
        "--host-netns",
        lab.host,
        "run",
        "--rm",
        sys.executable,
        "-c",
        script,
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 42


def test_environment_workdir_and_hostname(lab: Lab) -> None:
    out = lab.dy_ok(
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "--hostname",
        "box",
        "sh",
        "-c",
        'echo "$GREETING $(pwd) $(hostname) $HOSTNAME"',
    )
    assert out.split() == ["hi", "/tmp", "box", "box"]
    cid = lab.run_d("--name", "named", "sleep", "300")
    assert lab.dy_ok("exec", "named", "hostname").strip() == cid[:12]
    hosts = lab.dy_ok("exec", "named", "cat", "/etc/hosts")
    assert f"{lab.ip_of('named')}\t{cid[:12]} named" in hosts
    assert "127.0.0.1\tlocalhost" in hosts
    resolv = lab.dy_ok("exec", "named", "cat", "/etc/resolv.conf")
    assert "nameserver" in resolv and "127.0.0." not in resolv


def test_exec_runs_in_the_container_with_its_status(lab: Lab) -> None:
    lab.run_d("--name", "ex", "sleep", "300")
    assert (
        lab.dy_ok("exec", "ex", "ip", "-4", "-o", "addr", "show", "eth0")
        .split()[3]
        .startswith(lab.ip_of("ex"))
    )
    assert lab.dy("exec", "ex", "sh", "-c", "exit 5").returncode == 5
    assert lab.dy("exec", "ex", "nosuchcommand").returncode == 127
    r = lab.dy("exec", "-e", "X=1", "ex", "sh", "-c", "read line; echo $X $line", input="piped\n")
    assert r.stdout.strip() == "1 piped"


def test_stop_sends_sigterm_then_sigkill(lab: Lab) -> None:
    # sleep is PID 1 of its PID namespace, where SIGTERM without a handler is
    # ignored (as with Docker): --init's tini hands it on, and sleep dies of it.
    lab.run_d("--name", "polite", "--init", "sleep", "300")
    lab.init_ready("polite")
    assert lab.dy_ok("stop", "polite").strip() == "polite"
    state = lab.inspect("polite")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 143
    # SIGTERM first (the trap records it and carries on), SIGKILL when the grace is over.
    script = "trap 'echo TERM' TERM; echo up; while :; do sleep 0.1; done"
    lab.run_d("--name", "stubborn", "sh", "-c", script)
    lab.eventually(lambda: "up" in lab.dy_ok("logs", "stubborn"), what="the container started")
    lab.dy_ok("stop", "-t", "1", "stubborn")
    assert lab.dy_ok("logs", "stubborn").split() == ["up", "TERM"]
    assert lab.inspect("stubborn")["State"]["ExitCode"] == 137


def test_exit_releases_the_endpoint_and_rm_removes_the_record(lab: Lab) -> None:
    lab.serve("--name", "short", "-p", "8080:80")
    assert len(_veths(lab)) == 1 and lab.map_elements("publish_any")
    lab.dy_ok("stop", "-t", "0", "short")
    lab.eventually(lambda: not _veths(lab), what="veth removed")
    assert lab.map_elements("publish_any") == []
    assert lab.ask(lab.up, "tcp", HOST_ADDR, 8080, timeout=0.5) is None
    assert lab.dy("rm", "short").returncode == 0
    assert lab.dy_ok("ps", "-aq") == ""
    assert not (lab.root / "netns").exists() or not os.listdir(lab.root / "netns")


def test_rm_refuses_a_running_container_unless_forced(lab: Lab) -> None:
    lab.run_d("--name", "busy", "sleep", "300")
    r = lab.dy("rm", "busy")
    assert r.returncode == 125 and "stop the container before attempting removal or force remove" in r.stderr
    assert lab.dy_ok("rm", "-f", "busy").strip() == "busy"
    assert lab.dy_ok("ps", "-aq") == ""
    lab.eventually(lambda: not _veths(lab), what="veth removed")


def test_rm_flag_removes_the_container_after_a_foreground_run(lab: Lab) -> None:
    lab.dy_ok("run", "--rm", "--name", "once", "true")
    assert lab.dy_ok("ps", "-aq") == ""
    lab.dy_ok("run", "--name", "kept", "true")
    assert lab.inspect("kept")["State"]["Status"] == "exited"


def test_a_killed_foreground_client_does_not_orphan_the_container(lab: Lab) -> None:
    """Docker's behaviour: the container runs on; the daemon still notices its exit and cleans up."""
    cmd = [
        *DOCKYARD,
        "--root",
        str(lab.root),
        "--host-netns",
        lab.host,
        "run",
        "--rm",
        "--name",
        "fg",
        "sh",
        "-c",
        # It ends when the test says so: a fixed sleep could end before the inspect below.
        "echo up; while [ ! -e /tmp/fg.end ]; do sleep 0.05; done",
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "up"
    p.kill()
    p.wait()
    assert lab.inspect("fg")["State"]["Running"]
    lab.dy_ok("exec", "fg", "touch", "/tmp/fg.end")  # in the container's own /tmp
    lab.eventually(lambda: lab.dy_ok("ps", "-aq") == "", timeout=10, what="--rm container removed after exit")
    lab.eventually(lambda: not _veths(lab), what="veth removed")


def test_a_killed_daemon_leaves_containers_serving_and_is_cleaned_up_after(lab: Lab) -> None:
    lab.serve("--name", "live", "-p", "8080:80")
    lab.run_d("--name", "brief", "sleep", "2")
    brief_pid = lab.inspect("brief")["State"]["Pid"]
    daemon_pid = int((lab.root / "dockyardd.pid").read_text())
    os.kill(daemon_pid, signal.SIGKILL)
    lab.eventually(lambda: not pid_alive(daemon_pid), what="daemon gone")
    # During the outage the published port still answers.
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    lab.eventually(lambda: not pid_alive(brief_pid), timeout=30, what="`brief` ended while no daemon runs")
    # The next command starts a new daemon, which adopts `live` and records `brief`'s exit.
    ps = lab.dy_ok("ps", "-a")
    assert "live" in ps and "brief" in ps
    assert lab.inspect("live")["State"]["Running"]
    brief = lab.inspect("brief")["State"]
    assert brief["Status"] == "exited" and brief["ExitCode"] == 0
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    assert len(_veths(lab)) == 1
    # The adopted container's exit is still noticed.
    lab.dy_ok("stop", "-t", "0", "live")
    assert lab.inspect("live")["State"]["Status"] == "exited"
    lab.eventually(lambda: not _veths(lab), what="veth removed")


def test_a_stopped_daemon_leaves_containers_serving_and_the_next_adopts_them(lab: Lab) -> None:
    cid = lab.serve("--name", "live", "-p", "8080:80")
    pid = lab.inspect(cid)["State"]["Pid"]
    daemon_pid = int((lab.root / "dockyardd.pid").read_text())
    assert lab.dy_ok("daemon", "stop").strip() == "dockyardd stopped"
    assert not pid_alive(daemon_pid) and not (lab.root / "dockyard.sock").exists()
    # With no daemon the container runs on, and its published port answers.
    assert pid_alive(pid)
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    # The next command starts a daemon, which adopts it...
    assert "live" in lab.dy_ok("ps")
    assert int((lab.root / "dockyardd.pid").read_text()) != daemon_pid
    assert lab.inspect("live")["State"]["Running"]
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    # ...and records its exit when it ends (here by a signal from outside: SIGKILL,
    # as the probe is PID 1 of its PID namespace, where SIGTERM without a handler is ignored).
    os.kill(pid, signal.SIGKILL)
    lab.eventually(lambda: not lab.inspect("live")["State"]["Running"], what="the exit recorded")
    state = lab.inspect("live")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137, state
    lab.eventually(lambda: not _veths(lab), what="veth removed")
    assert lab.map_elements("publish_any") == []


def test_nothing_is_left_after_rm_and_daemon_stop(lab: Lab) -> None:
    for i in range(3):
        lab.run_d("--name", f"c{i}", "-p", f"{9000 + i}:80", "sleep", "300")
    lab.run_d("--name", "n0", "--net", "none", "sleep", "300")
    lab.run_d("--name", "h0", "--net", "host", "sleep", "300")
    pids = [lab.inspect(n)["State"]["Pid"] for n in ("c0", "c1", "c2", "n0", "h0")]
    lab.dy_ok("rm", "-f", "c0", "c1", "c2", "n0", "h0")
    lab.dy_ok("daemon", "stop")
    assert not any(pid_alive(p) for p in pids)
    assert not _veths(lab)
    assert str(lab.root) not in Path("/proc/self/mountinfo").read_text()
    assert lab.map_elements("publish_any") == []
    assert not (lab.root / "dockyard.sock").exists() and not (lab.root / "shim.sock").exists()


def test_many_clients_at_once_get_distinct_addresses_and_names(lab: Lab) -> None:
    lab.dy_ok("ps")
    cmd = [*DOCKYARD, "--root", str(lab.root), "--host-netns", lab.host, "run", "-d", "sleep", "300"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)
    ]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ids.append(out.strip())
    infos = [lab.inspect(i) for i in ids]
    assert len({i["NetworkSettings"]["IPAddress"] for i in infos}) == 8
    assert len({i["Name"] for i in infos}) == 8


def test_ps_and_inspect_show_dockers_fields(lab: Lab) -> None:
    cid = lab.serve("--name", "shown", "-p", "8080:80")
    lines = lab.dy_ok("ps").splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "NAME", "COMMAND", "STATUS", "PORTS", "NETWORK"]
    assert (
        lines[1].startswith(cid[:12])
        and "shown" in lines[1]
        and "0.0.0.0:8080->80/tcp" in lines[1]
        and lines[1].endswith("bridge")
    )
    assert lab.dy_ok("ps", "-q").split() == [cid[:12]]
    info = lab.inspect("shown")
    assert info["Id"] == cid and info["Name"] == "/shown"
    assert info["State"]["Status"] == "running" and info["State"]["Running"] and info["State"]["Pid"] > 0
    assert info["HostConfig"]["NetworkMode"] == "bridge"
    assert info["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    ns = info["NetworkSettings"]
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert ns["SandboxKey"] == str(lab.root / "netns" / cid[:16])
    net = ns["Networks"]["bridge"]
    assert {"IPAddress", "IPPrefixLen", "Gateway", "MacAddress", "NetworkID", "EndpointID"} <= set(net)
    assert net["IPAddress"] == ns["IPAddress"] and net["MacAddress"] == ns["MacAddress"]
    assert lab.dy_ok("port", "shown").strip() == "80/tcp -> 0.0.0.0:8080"
    assert lab.dy_ok("port", "shown", "80").strip() == "0.0.0.0:8080"


def test_network_ls_and_inspect_show_the_builtin_networks(lab: Lab) -> None:
    lines = lab.dy_ok("network", "ls").splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = {line.split()[1]: line.split()[2] for line in lines[1:]}
    assert rows == {"bridge": "bridge", "host": "host", "none": "null"}
    bridge = json.loads(lab.dy_ok("network", "inspect", "bridge"))[0]
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.name"] == "dockyard0"
    cid = lab.run_d("sleep", "300")
    bridge = json.loads(lab.dy_ok("network", "inspect", "bridge"))[0]
    assert list(bridge["Containers"]) == [cid]


def test_sigint_is_forwarded_to_a_foreground_container(lab: Lab) -> None:
    script = (
        "import signal,sys,time\n"
        "signal.signal(signal.SIGINT, lambda *a: sys.exit(43))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    cmd = [*DOCKYARD, "--root", str(lab.root), "--host-netns", lab.host, "run", "--rm", sys.executable]
    p = subprocess.Popen([*cmd, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGINT)
    # 43 is the container's own answer to SIGINT: the client did not just die of it (130).
    assert p.wait(timeout=20) == 43


def _fake_daemon(root: Path, requests: list[str]) -> socket.socket:
    """A socket at root/dockyard.sock that records each request line and answers 204."""
    root.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(root / "dockyard.sock"))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                requests.append(data.decode("latin-1").split("\r\n")[0])
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_stop_without_t_leaves_the_grace_to_the_daemon(tmp_path: Path) -> None:
    """`stop` sends no t (Docker's client neither), so the daemon's default applies: 10 s,
    which tests/unit/test_stop_timeout.py checks. Seen on the wire, without waiting 10 s."""
    requests: list[str] = []
    server = _fake_daemon(tmp_path / "root", requests)
    try:
        for args in (["stop", "c1"], ["stop", "-t", "1", "c1"], ["stop", "--time", "0", "c1"]):
            r = subprocess.run(
                [*DOCKYARD, "--root", str(tmp_path / "root"), *args],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert (r.returncode, r.stdout, r.stderr) == (0, "c1\n", ""), args
    finally:
        server.close()
    assert requests == [
        "POST /containers/c1/stop HTTP/1.1",
        "POST /containers/c1/stop?t=1 HTTP/1.1",
        "POST /containers/c1/stop?t=0 HTTP/1.1",
    ]


def _mounts_under(directory: Path, pid: str = "self") -> list[str]:
    prefix = str(directory)
    with open(f"/proc/{pid}/mountinfo") as f:
        return sorted(m for line in f if (m := line.split()[4]) == prefix or m.startswith(prefix + "/"))


def test_the_pins_are_one_mount_that_a_container_drops_whole(lab: Lab) -> None:
    """$ROOT/netns is a mount of its own, so a start drops every pin in one unmount."""
    netns_dir = lab.root / "netns"
    cids = [lab.run_d("--name", f"p{i}", "sleep", "300") for i in range(3)]
    pins = sorted(lab.inspect(c)["NetworkSettings"]["SandboxKey"] for c in cids)
    assert _mounts_under(netns_dir) == [str(netns_dir), *pins]
    for cid in cids:
        assert _mounts_under(netns_dir, str(lab.inspect(cid)["State"]["Pid"])) == []
    # A pin is still joinable from the host.
    r = subprocess.run(["nsenter", f"--net={pins[0]}", "ip", "-br", "addr"], capture_output=True, text=True)
    assert r.returncode == 0 and "eth0" in r.stdout, r.stderr


def test_a_root_from_before_the_pin_mount_is_taken_over(lab: Lab) -> None:
    """A root whose pins sit directly under $ROOT/netns (as before it was a mount of
    its own): the next daemon moves them under the mount, running containers keep theirs."""
    netns_dir = lab.root / "netns"
    cid = lab.serve("--name", "old", "-p", "8080:80")
    pin = lab.inspect(cid)["NetworkSettings"]["SandboxKey"]
    lab.dy_ok("daemon", "stop")
    # Make it the old layout: the pin mounted straight on the directory, no mount of its own.
    fd = os.open(pin, os.O_RDONLY)
    try:
        for target in (pin, str(netns_dir)):
            subprocess.run(["umount", "-l", target], check=True)
        netns.mount(f"/proc/self/fd/{fd}", pin, None, netns.MS_BIND)
    finally:
        os.close(fd)
    assert _mounts_under(netns_dir) == [pin]
    assert lab.inspect("old")["State"]["Running"]
    assert _mounts_under(netns_dir) == [str(netns_dir), pin]
    assert lab.wait_answer(lab.up, "tcp", HOST_ADDR, 8080).startswith(f"peer={UP_ADDR}:")
    second = lab.run_d("--name", "new", "sleep", "300")
    assert _mounts_under(netns_dir, str(lab.inspect(second)["State"]["Pid"])) == []
    lab.dy_ok("rm", "-f", "old", "new")
    lab.dy_ok("daemon", "stop")
    assert _mounts_under(lab.root) == []


def test_run_and_rm_keep_no_descriptor_in_the_daemon(lab: Lab) -> None:
    """pyroute2 gave every thread that used the host's handle a netlink socket of its
    own, kept until the handle closed: one descriptor (and its memory) per start."""
    lab.run_d("--name", "warm", "sleep", "300")
    lab.dy_ok("rm", "-f", "warm")
    daemon = int((lab.root / "dockyardd.pid").read_text())
    before = len(os.listdir(f"/proc/{daemon}/fd"))
    for i in range(20):
        lab.run_d("--name", f"c{i}", "-p", f"{9100 + i}:80", "sleep", "300")
        lab.dy_ok("rm", "-f", f"c{i}")
    # A little slack for the connection being closed right now.
    assert len(os.listdir(f"/proc/{daemon}/fd")) - before < 5
