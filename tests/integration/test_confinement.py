"""A container stays in its box: attacks from inside, each shown attempted and failed.

Every test runs a command in a container of the lab that tries something a
container must not do (enter the daemon's namespaces, see or signal host
processes, reach $ROOT, write the host's files) and checks both that the
command ran and that the attempt failed; and Docker's flags that widen or
narrow the box (--cap-add, --cap-drop, --privileged, --user, --group-add,
--security-opt no-new-privileges, --pids-limit, --init).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dockyard.kernel import cgroups
from dockyard.policy import security
from lab import Lab, pid_alive

DOCKER_DEFAULT_MASK = 0x00000000A80425FB


def _caps(status: str, field: str) -> int:
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(f"{field} not in /proc/self/status")


def _status_field(status: str, field: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith(field + ":"))


def test_the_daemons_network_namespace_cannot_be_entered(lab: Lab) -> None:
    lab.dy_ok("ps")
    daemon_pid = int((lab.root / "dockyardd.pid").read_text())
    r = lab.dy(
        "run", "--rm", "sh", "-c",
        f"echo attempted; nsenter --net=/proc/{daemon_pid}/ns/net nft add table inet x; echo rc=$?",
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("attempted")
    assert "rc=0" not in r.stdout
    assert lab.in_host("nft", "list", "table", "inet", "x").returncode != 0


def test_proc_shows_only_the_containers_own_processes(lab: Lab) -> None:
    host_sleep = subprocess.Popen(["sleep", "60"])
    try:
        out = lab.dy_ok("run", "--rm", "sh", "-c", "echo self=$$; ls /proc | grep -E '^[0-9]+$'")
    finally:
        host_sleep.kill()
        host_sleep.wait()
    lines = out.split()
    assert lines[0] == "self=1", "the command is PID 1 of its own PID namespace"
    pids = {int(p) for p in lines[1:]}
    assert 1 in pids and len(pids) <= 4, f"only sh, ls and grep: {pids}"
    assert host_sleep.pid not in pids or host_sleep.pid < 5


def test_exec_joins_the_containers_pid_namespace(lab: Lab) -> None:
    lab.run_d("--name", "box", "sleep", "300")
    out = lab.dy_ok(
        "exec", "box", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -cE '^[0-9]+$'"
    )
    cmdline, count = out.splitlines()
    assert cmdline.strip() == "sleep 300"
    assert int(count) <= 4


def test_a_host_process_cannot_be_killed(lab: Lab) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        r = lab.dy("run", "--rm", "sh", "-c", f"echo attempted; kill -9 {victim.pid}; echo rc=$?")
        assert r.stdout.startswith("attempted") and "rc=0" not in r.stdout
        assert pid_alive(victim.pid)
    finally:
        victim.kill()
        victim.wait()


def test_the_engines_files_are_out_of_reach(lab: Lab) -> None:
    other = lab.run_d("--name", "other", "sleep", "300")
    assert (lab.root / "dockyard.sock").exists() and (lab.root / "dockyard.db").exists()
    other_dir = lab.root / "containers" / other
    assert other_dir.is_dir()
    probe = (
        "import os, socket, sys\n"
        "print('attempted')\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({str(lab.root / 'dockyard.sock')!r}); print('socket: reached')\n"
        "except OSError as e:\n"
        "    print('socket:', e.errno)\n"
        f"for path in ({str(lab.root / 'dockyard.db')!r}, {str(other_dir / 'hosts')!r}):\n"
        "    try:\n"
        "        open(path, 'rb').read(1); print('file: read', path)\n"
        "    except OSError as e:\n"
        "        print('file:', e.errno)\n"
        f"print('root:', os.listdir({str(lab.root)!r}))\n"
        "print('netns:', os.listdir('/run/netns') if os.path.isdir('/run/netns') else None)\n"
    )
    out = lab.dy_ok("run", "--rm", sys.executable, "-c", probe)
    assert out.startswith("attempted")
    assert "reached" not in out and "file: read" not in out
    assert "root: []" in out
    assert os.listdir("/run/netns"), "the lab's own namespaces are there on the host"
    assert "netns: []" in out or "netns: None" in out


def test_writes_stay_in_the_containers_layer_and_go_with_it(lab: Lab) -> None:
    host_file = lab.tmp / "host-file"
    host_file.write_text("host\n")
    out = lab.dy_ok(
        "run", "--name", "writer", "sh", "-c",
        f"echo changed > {host_file}; echo new > /etc/dockyard-test-file; cat {host_file} /etc/dockyard-test-file",
    )  # fmt: skip
    assert out.split() == ["changed", "new"], "the writes were made, in the container's view"
    assert host_file.read_text() == "host\n"
    assert not Path("/etc/dockyard-test-file").exists()
    # The layer is kept while the container is (Docker keeps its writes until rm).
    layer = lab.root / "containers" / lab.inspect("writer")["Id"] / "rootfs"
    assert layer.is_dir()
    lab.dy_ok("rm", "writer")
    assert not layer.exists()


def test_docker_default_capabilities(lab: Lab) -> None:
    status = lab.dy_ok("run", "--rm", "cat", "/proc/self/status")
    assert _caps(status, "CapEff") == DOCKER_DEFAULT_MASK
    assert _caps(status, "CapBnd") == DOCKER_DEFAULT_MASK
    assert _caps(status, "CapPrm") == DOCKER_DEFAULT_MASK
    assert _caps(status, "CapInh") == 0 and _caps(status, "CapAmb") == 0
    # The mask the engine computes from Docker's default list is the one the kernel shows.
    assert _caps(status, "CapEff") == security.capability_mask(security.DEFAULT_CAPABILITIES)
    assert _status_field(status, "NoNewPrivs") == "0"


def test_cap_add_net_admin_lets_ip_addr_add_work(lab: Lab) -> None:
    cmd = "ip addr add 192.0.2.9/32 dev lo && ip -4 -o addr show dev lo"
    r = lab.dy("run", "--rm", "sh", "-c", cmd)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    out = lab.dy_ok("run", "--rm", "--cap-add", "net_admin", "sh", "-c", cmd)
    assert "192.0.2.9/32" in out


def test_cap_drop_net_raw_makes_ping_fail(lab: Lab) -> None:
    lab.dy_ok("run", "--rm", "ping", "-c", "1", "-W", "2", "127.0.0.1")
    r = lab.dy("run", "--rm", "--cap-drop", "CAP_NET_RAW", "ping", "-c", "1", "-W", "2", "127.0.0.1")
    assert r.returncode != 0
    status = lab.dy_ok("run", "--rm", "--cap-drop", "NET_RAW", "cat", "/proc/self/status")
    assert _caps(status, "CapEff") == DOCKER_DEFAULT_MASK & ~(1 << security.CAPABILITIES["CAP_NET_RAW"])


def test_cap_drop_all_and_add_one(lab: Lab) -> None:
    status = lab.dy_ok("run", "--rm", "--cap-drop", "ALL", "--cap-add", "kill", "cat", "/proc/self/status")
    assert _caps(status, "CapEff") == 1 << security.CAPABILITIES["CAP_KILL"]


def test_privileged_gets_every_capability_the_daemon_holds(lab: Lab) -> None:
    status = lab.dy_ok("run", "--rm", "--privileged", "cat", "/proc/self/status")
    held = _caps(Path("/proc/self/status").read_text(), "CapBnd")
    assert _caps(status, "CapEff") == held
    out = lab.dy_ok(
        "run", "--rm", "--privileged", "sh", "-c", "ip link add dyt-x type veth peer dyt-y && echo made"
    )
    assert out.strip() == "made"


def test_user_and_groups(lab: Lab) -> None:
    out = lab.dy_ok(
        "run",
        "--rm",
        "--user",
        "nobody",
        "sh",
        "-c",
        "id -u; id -g; echo $HOME; grep CapEff /proc/self/status",
    )
    uid, gid, home, capeff = out.splitlines()
    assert (uid, gid, home) == ("65534", "65534", "/nonexistent")
    assert int(capeff.split()[1], 16) == 0, "a non-root user has no effective capabilities"
    assert lab.dy_ok("run", "--rm", "--user", "1000:1000", "sh", "-c", "id -u; id -g").split() == [
        "1000",
        "1000",
    ]
    groups = lab.dy_ok(
        "run", "--rm", "--user", "nobody", "--group-add", "users", "--group-add", "4242", "id", "-G"
    )
    assert set(groups.split()) == {"65534", "100", "4242"}


def test_an_unknown_capability_or_user_is_refused_and_nothing_made(lab: Lab) -> None:
    for args, message in (
        (["--cap-add", "NET_WIZARD"], "unknown capability: 'NET_WIZARD'"),
        (["--user", "no-such-user"], "unable to find user no-such-user"),
        (["--group-add", "no-such-group"], "unable to find group no-such-group"),
        (["--security-opt", "seccomp=unconfined"], "unsupported --security-opt: 'seccomp=unconfined'"),
    ):
        r = lab.dy("run", "--rm", *args, "true")
        assert r.returncode == 125, (args, r.stderr)
        assert r.stderr.strip().splitlines() == [f"dockyard: {r.stderr.strip().removeprefix('dockyard: ')}"]
        assert message in r.stderr
    assert lab.dy_ok("ps", "-aq") == ""
    assert not (lab.root / "containers").exists() or not os.listdir(lab.root / "containers")


def test_no_new_privileges(lab: Lab) -> None:
    status = lab.dy_ok("run", "--rm", "--security-opt", "no-new-privileges", "cat", "/proc/self/status")
    assert _status_field(status, "NoNewPrivs") == "1"
    # ping's file capability no longer lifts a non-root user.
    assert (
        lab.dy("run", "--rm", "--user", "nobody", "ping", "-c", "1", "-W", "2", "127.0.0.1").returncode == 0
    )
    r = lab.dy(
        "run", "--rm", "--user", "nobody", "--security-opt", "no-new-privileges:true",
        "ping", "-c", "1", "-W", "2", "127.0.0.1",
    )  # fmt: skip
    assert r.returncode != 0


FORK_LOOP = """
import os, time
made = 0
for _ in range(40):
    try:
        pid = os.fork()
    except OSError as e:
        print("refused", e.errno)
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    made += 1
print("forked", made)
"""


def test_pids_limit_stops_a_fork_loop(lab: Lab) -> None:
    out = lab.dy_ok("run", "--rm", "--pids-limit", "10", sys.executable, "-c", FORK_LOOP)
    assert out.splitlines() == ["refused 11", "forked 9"], "EAGAIN at the limit: PID 1 and 9 children"
    # Unlimited (the default): every fork succeeds.
    assert lab.dy_ok("run", "--rm", sys.executable, "-c", FORK_LOOP).split() == ["forked", "40"]


def test_descriptor_limit_is_dockers_not_the_daemons(lab: Lab) -> None:
    soft = lab.dy_ok("run", "--rm", "sh", "-c", "ulimit -n").strip()
    assert soft == "1024"


def test_a_limited_container_has_a_cgroup_of_this_root_removed_with_it(lab: Lab) -> None:
    groups = cgroups.Cgroups(lab.root)
    assert groups.available
    cid = lab.run_d("--pids-limit", "20", "sleep", "300")
    path = groups.path(cid)
    assert path is not None and (path / "pids.max").read_text().strip() == "20"
    pid = lab.inspect(cid)["State"]["Pid"]
    assert str(pid) in (path / "cgroup.procs").read_text().split()
    # An exec joins it too.
    exec_cgroups = lab.dy_ok("exec", cid, "cat", "/proc/self/cgroup").split()
    assert any(line.endswith(f"pids:/{groups.parent.name}/{cid}") for line in exec_cgroups), exec_cgroups
    lab.dy_ok("rm", "-f", cid)
    assert not path.exists()


def test_a_container_without_a_limit_is_in_no_cgroup_of_this_root(lab: Lab) -> None:
    groups = cgroups.Cgroups(lab.root)
    assert groups.available and groups.parent is not None
    cid = lab.run_d("sleep", "300")
    path = groups.path(cid)
    assert path is not None and not path.exists()
    pid = lab.inspect(cid)["State"]["Pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert lines and not any(groups.parent.name in line for line in lines), lines
    # Its execs run too.
    assert lab.dy_ok("exec", cid, "echo", "ran") == "ran\n"
    lab.dy_ok("rm", "-f", cid)


def test_init_forwards_signals_and_sleep_alone_ignores_sigterm(lab: Lab) -> None:
    lab.run_d("--name", "plain", "sleep", "300")
    lab.run_d("--name", "with-init", "--init", "sleep", "300")
    lab.init_ready("with-init")
    # With --init, SIGTERM reaches sleep through tini: it ends at once with 143.
    lab.dy_ok("stop", "-t", "30", "with-init")
    assert lab.inspect("with-init")["State"]["ExitCode"] == 143
    # As PID 1 without a handler, sleep ignores SIGTERM (as with Docker): SIGKILL after the grace.
    lab.dy_ok("stop", "-t", "1", "plain")
    assert lab.inspect("plain")["State"]["ExitCode"] == 137


def test_host_and_container_modes_are_confined_too(lab: Lab) -> None:
    lab.run_d("--name", "base", "sleep", "300")
    for mode in ("host", "container:base"):
        status = lab.dy_ok("run", "--rm", "--net", mode, "sh", "-c", "echo $$; cat /proc/self/status")
        assert status.split()[0] == "1"
        assert _caps(status, "CapEff") == DOCKER_DEFAULT_MASK
        out = lab.dy_ok("run", "--rm", "--net", mode, "ls", str(lab.root))
        assert out == ""


def test_network_files_are_bound_and_connect_rewrites_resolv_conf(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.77.0.0/24", "named")
    lab.run_d("--name", "web", "sleep", "300")
    assert "nameserver 10.77.0.1" not in lab.dy_ok("exec", "web", "cat", "/etc/resolv.conf")
    lab.dy_ok("network", "connect", "named", "web")
    assert "nameserver 10.77.0.1" in lab.dy_ok("exec", "web", "cat", "/etc/resolv.conf")
    assert lab.dy_ok("exec", "web", "cat", "/etc/hostname").strip() == lab.inspect("web")["Id"][:12]
    lab.dy_ok("rm", "-f", "web")
    lab.dy_ok("network", "rm", "named")


OLD_SHIM = """
import json, os, socket, sys, threading
path = sys.argv[1]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
listener.bind(path)
listener.listen(4)
print("listening", flush=True)


def serve():
    while True:
        conn, _ = listener.accept()
        msg = json.loads(conn.recv(65536))
        # The previous version's ping: no protocol version in the answer.
        conn.send(json.dumps({"ok": True, "pid": os.getpid(), "seq": msg.get("seq")}).encode())
        print("asked", msg["op"], flush=True)


threading.Thread(target=serve, daemon=True).start()
sys.stdin.readline()
os.unlink(path)  # what an older shim's close() does when its last container ends
print("gone", flush=True)
"""


def test_an_older_shim_keeps_its_place_and_a_new_one_confines(lab: Lab) -> None:
    """After an upgrade the previous version's shim may still run (for the containers it
    started): the daemon starts a new shim for new containers, which keeps the socket's path."""
    lab.root.mkdir(parents=True, exist_ok=True)
    old = subprocess.Popen(
        [sys.executable, "-c", OLD_SHIM, str(lab.root / "shim.sock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lab.procs.append(old)
    assert old.stdin is not None and old.stdout is not None
    assert old.stdout.readline().strip() == "listening"
    cid = lab.run_d("--name", "new", "sleep", "300")
    assert old.stdout.readline().strip() == "asked ping", "the daemon asked the older shim first"
    shim_pid = int((lab.root / "shim.pid").read_text())
    assert shim_pid != old.pid and lab.inspect(cid)["State"]["Running"]
    status = lab.dy_ok("exec", "new", "cat", "/proc/self/status")
    assert _caps(status, "CapEff") == DOCKER_DEFAULT_MASK
    # The older shim ends and takes the path with it: the new one binds it again,
    # and the next daemon finds it there.
    old.stdin.write("\n")
    old.stdin.flush()
    while (line := old.stdout.readline().strip()) != "gone":
        assert line == "asked ping", line
    lab.eventually(lambda: (lab.root / "shim.sock").exists(), timeout=5, what="the path bound again")
    lab.dy_ok("daemon", "stop")
    assert lab.dy_ok("exec", "new", "echo", "adopted").strip() == "adopted"
    assert int((lab.root / "shim.pid").read_text()) == shim_pid
