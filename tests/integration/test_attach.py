"""Docker's stream endpoints through Docker's own clients: attach, exec, logs, -i and -t.

The docker CLI 28 (DOCKER_HOST at the lab's socket) and docker-py are the
judges: a foreground `run` prints the container's output and exits with
its code, `--rm` leaves nothing, stdin reaches the container with -i, -t
gives it a terminal, `start -a` and `attach` follow a container's output,
exec runs attached, detached and with stdin, and logs keep stdout and
stderr apart, with --tail, -t and -f. Each test imports its busybox image
first (busybox-static and the links its commands need, /etc/passwd with
nobody), so that the commands are the image's wherever containers run on
images, and the host's same commands where they do not yet.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import select
import socket
import struct
import subprocess
import tarfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_cli import DOCKER, DockerCli
from lab import Lab

APPLETS = ("sh", "cat", "echo", "tr", "id", "stty", "tty", "sleep", "test", "true", "ls")


def busybox_image() -> bytes:
    """A root file system with what these tests run."""
    buf = io.BytesIO()

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        t.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w") as t:
        t.add("/bin/busybox", "bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(info)
        for directory, mode in (("tmp", 0o1777), ("etc", 0o755)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            t.addfile(info)
        add(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        add("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


@pytest.fixture
def docker(lab: Lab, tmp_path: Path) -> DockerCli:
    cli = DockerCli.for_lab(lab, tmp_path)
    cli.import_image("busybox:latest", tarball=busybox_image())
    return cli


def _names(docker: DockerCli) -> list[str]:
    return docker.ok("ps", "-a", "--format", "{{.Names}}").split()


def test_foreground_run_prints_the_output_and_passes_the_exit_code(docker: DockerCli) -> None:
    r = docker.run("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    assert _names(docker) == [], "--rm left nothing"
    r = docker.run("run", "--name", "kept", "busybox", "sh", "-c", "printf 'a\\0b'")
    assert (r.returncode, r.stdout) == (0, b"a\0b"), r.stderr
    assert _names(docker) == ["kept"]
    # A command that is not there: Docker's 127, and the container is recorded as such.
    r = docker.run("run", "--rm", "busybox", "no-such-command-here")
    assert r.returncode == 127 and b"executable file not found" in r.stderr
    assert _names(docker) == ["kept"]


def test_run_i_passes_stdin_and_closes_it_at_its_end(docker: DockerCli) -> None:
    # More than the shim queues either way (1 MiB): stdin and output are throttled, never lost.
    data = b"".join(b"line %d\n" % i for i in range(800000))
    r = docker.run("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done >&2", input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data and r.stderr == b"done\n"
    # Without -i the container's stdin is empty (/dev/null), whatever the client has.
    r = docker.run("run", "--rm", "busybox", "sh", "-c", "cat; echo end", input=b"ignored\n")
    assert (r.returncode, r.stdout) == (0, b"end\n")


def test_run_t_gives_the_container_a_terminal(docker: DockerCli) -> None:
    r = docker.run("run", "--rm", "busybox", "sh", "-c", "test -t 0 && echo tty || echo none")
    assert r.stdout == b"none\n"
    r = docker.run("run", "-t", "--rm", "busybox", "sh", "-c", "test -t 0 && test -t 1 && tty; exit 5")
    # One raw stream: the terminal turns \n into \r\n, and the name is the container's own pts.
    assert (r.returncode, r.stdout) == (5, b"/dev/pts/0\r\n"), r.stderr

    # The terminal's size is what the client says (the CLI's resize calls), for execs too.
    docker.ok("run", "-d", "-t", "--name", "term", "busybox", "sleep", "300")
    _api(docker, "POST", "/containers/term/resize?h=33&w=111", None)
    assert docker.ok("exec", "term", "stty", "-F", "/dev/pts/0", "size") == "33 111\n"
    r = docker.run("exec", "-t", "term", "sh", "-c", "tty; exit 2")
    assert (r.returncode, r.stdout) == (2, b"/dev/pts/1\r\n"), r.stderr
    # A container without a terminal has none to resize: refused (409).
    docker.ok("run", "-d", "--name", "plain", "busybox", "sleep", "300")
    assert _status(docker, "POST", "/containers/plain/resize?h=10&w=10") == 409
    docker.ok("rm", "-f", "term", "plain")


def test_start_a_and_attach_follow_the_container(lab: Lab, docker: DockerCli) -> None:
    docker.ok("create", "--name", "once", "busybox", "sh", "-c", "echo first; echo second >&2; exit 4")
    r = docker.run("start", "-a", "once")
    assert (r.returncode, r.stdout, r.stderr) == (4, b"first\n", b"second\n")

    # `attach` to a running container: its stdin, what it writes from then on, its exit code.
    docker.ok("run", "-d", "-i", "--name", "reader", "busybox", "sh", "-c", "read x; echo got $x; exit 6")
    attached = docker.popen("attach", "reader")
    try:
        out, err = attached.communicate(b"hello\n", timeout=30)
    finally:
        if attached.poll() is None:
            attached.kill()
            attached.wait()
    assert (attached.returncode, out) == (6, b"got hello\n"), err


def test_exec_attached_detached_and_with_stdin(docker: DockerCli) -> None:
    docker.ok("run", "-d", "--name", "box", "busybox", "sleep", "300")
    r = docker.run("exec", "box", "sh", "-c", "echo hi; echo oops >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, b"hi\n", b"oops\n")
    r = docker.run("exec", "-i", "box", "sh", "-c", "tr a-z A-Z", input=b"shout\n")
    assert (r.returncode, r.stdout) == (0, b"SHOUT\n"), r.stderr
    r = docker.run("exec", "-e", "WHO=there", "-w", "/tmp", "box", "sh", "-c", 'echo "$WHO $(pwd)"')
    assert r.stdout == b"there /tmp\n"
    r = docker.run("exec", "-u", "nobody", "box", "id", "-u")
    assert (r.returncode, r.stdout) == (0, b"65534\n"), r.stderr
    plain = _cap_eff(docker.ok("exec", "box", "cat", "/proc/self/status"))
    privileged = _cap_eff(docker.ok("exec", "--privileged", "box", "cat", "/proc/self/status"))
    assert privileged != plain and privileged & plain == plain
    r = docker.run("exec", "box", "no-such-command-here")
    assert r.returncode == 127 and b"executable file not found" in r.stdout + r.stderr
    # Detached: the exit code is in the exec's inspect once it ended.
    created = json.loads(
        _api(docker, "POST", "/containers/box/exec", {"Cmd": ["sh", "-c", "exit 9"], "AttachStdout": False})
    )
    exec_id = created["Id"]
    _api(docker, "POST", f"/exec/{exec_id}/start", {"Detach": True})
    deadline = time.monotonic() + 20
    while True:
        info = json.loads(_api(docker, "GET", f"/exec/{exec_id}/json"))
        if not info["Running"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (info["Running"], info["ExitCode"]) == (False, 9)
    assert info["ProcessConfig"]["entrypoint"] == "sh" and info["ProcessConfig"]["arguments"] == [
        "-c",
        "exit 9",
    ]
    assert info["Pid"] > 0
    docker.ok("rm", "-f", "box")


def _cap_eff(status: str) -> int:
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)


def _api(docker: DockerCli, method: str, path: str, body: object = None) -> bytes:
    """A raw API call that must succeed; its body."""
    status, payload = docker.api(method, path, body)
    assert status < 300, (method, path, status, payload)
    return payload


def _status(docker: DockerCli, method: str, path: str) -> int:
    return docker.api(method, path)[0]


def test_logs_keep_the_streams_apart_with_tail_timestamps_and_follow(docker: DockerCli) -> None:
    docker.ok(
        "run",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo out$i; echo err$i >&2; done",
    )
    r = docker.run("logs", "talker")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"out1\nout2\nout3\n", b"err1\nerr2\nerr3\n")
    # The tail of the whole log (Docker's json-file), then the streams asked for.
    docker.ok("run", "--name", "counter", "busybox", "sh", "-c", "for i in 1 2 3 4; do echo $i; done")
    r = docker.run("logs", "--tail", "2", "counter")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"3\n4\n", b"")
    r = docker.run("logs", "-t", "talker")
    stamp, text = r.stdout.decode().splitlines()[0].split(" ", 1)
    assert text == "out1" and stamp.endswith("Z") and len(stamp) == len("2024-01-02T03:04:05.123456789Z")
    r = docker.run("logs", "--since", "2000-01-01T00:00:00Z", "--until", "2001-01-01T00:00:00Z", "talker")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")

    # -f follows until the container ends.
    docker.ok("run", "-d", "-i", "--name", "slow", "busybox", "sh", "-c", "echo begin; read x; echo end $x")
    follower = docker.popen("logs", "-f", "slow")
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == b"begin\n"
        # The exec may be killed with the container it ends (its PID namespace): its status is no matter.
        docker.run("exec", "slow", "sh", "-c", "echo now > /proc/1/fd/0")
        out, _ = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert (follower.returncode, out) == (0, b"end now\n")


@pytest.fixture
def docker_py(lab: Lab, docker: DockerCli) -> Iterator[object]:
    import docker as docker_module

    client = docker_module.DockerClient(base_url=f"unix://{lab.root}/dockyard.sock", version="1.41")
    try:
        yield client
    finally:
        client.close()


def test_docker_py_run_exec_run_and_logs(docker_py: object) -> None:
    client = docker_py
    out = client.containers.run("busybox", ["sh", "-c", "echo from-run"], remove=True)  # type: ignore[attr-defined]
    assert out == b"from-run\n"
    box = client.containers.run("busybox", ["sleep", "300"], detach=True, name="pybox")  # type: ignore[attr-defined]
    try:
        code, output = box.exec_run(["sh", "-c", "echo via-exec; exit 2"])
        assert (code, output) == (2, b"via-exec\n")
        code, (stdout, stderr) = box.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
        assert (code, stdout, stderr) == (0, b"o\n", b"e\n")
        box.exec_run(["sh", "-c", "echo logged > /proc/1/fd/1"])
        assert box.attrs["HostConfig"]["LogConfig"]["Type"] == "json-file"
        assert box.logs() == b"logged\n"
        assert box.logs(stdout=False) == b""
    finally:
        box.remove(force=True)
    # attach before start, as docker-py's users do: the whole output, then the end.
    once = client.containers.create("busybox", ["sh", "-c", "echo a; echo b >&2"])  # type: ignore[attr-defined]
    stream = once.attach(stream=True, stdout=True, stderr=True)
    once.start()
    assert b"".join(stream) in (b"a\nb\n", b"b\na\n")
    assert once.wait()["StatusCode"] == 0
    once.remove()


def test_detach_keys_end_the_session_and_leave_the_container_running(lab: Lab, docker: DockerCli) -> None:
    docker.ok("run", "-d", "-i", "-t", "--name", "shell", "busybox", "sh")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(docker.socket_path)
    sock.sendall(
        b"POST /v1.41/containers/shell/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
        b"Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert b"Content-Type: application/vnd.docker.raw-stream" in head
    sock.sendall(b"echo mark-$((40+2))\n")
    seen = b""
    while b"mark-42" not in seen:
        chunk = sock.recv(4096)
        assert chunk, seen
        seen += chunk
    sock.sendall(b"\x10\x11")  # ctrl-p ctrl-q
    while sock.recv(4096):  # the stream ends
        pass
    sock.close()
    info = json.loads(docker.ok("inspect", "shell"))[0]
    assert info["State"]["Running"] and info["Config"]["Tty"] and info["Config"]["OpenStdin"]
    docker.ok("rm", "-f", "shell")


def test_console_size_is_the_terminal_size_at_start(docker: DockerCli) -> None:
    """HostConfig.ConsoleSize (docker-py's and the docker CLI's) sizes the pty before the command
    runs, and an exec's ConsoleSize (at create, or at start) its own."""
    created = json.loads(
        _api(
            docker,
            "POST",
            "/containers/create?name=sized",
            {
                "Image": "busybox",
                "Cmd": ["stty", "size"],
                "Tty": True,
                "HostConfig": {"ConsoleSize": [24, 99]},
            },
        )
    )
    _api(docker, "POST", f"/containers/{created['Id']}/start")
    assert json.loads(_api(docker, "POST", "/containers/sized/wait"))["StatusCode"] == 0
    assert docker.ok("logs", "sized") == "24 99\r\n"
    info = json.loads(docker.ok("inspect", "sized"))[0]
    assert info["HostConfig"]["ConsoleSize"] == [24, 99]
    # A size that is not [height, width] is refused by name, and nothing is made.
    status, body = docker.api(
        "POST",
        "/containers/create",
        {"Image": "busybox", "Cmd": ["true"], "Tty": True, "HostConfig": {"ConsoleSize": [-1, 80]}},
    )
    assert status == 400 and b"HostConfig.ConsoleSize" in body, body
    assert _names(docker) == ["sized"]

    docker.ok("run", "-d", "-t", "--name", "term", "busybox", "sleep", "300")
    spec = {"Cmd": ["stty", "size"], "Tty": True, "AttachStdout": True, "ConsoleSize": [10, 20]}
    exec_id = json.loads(_api(docker, "POST", "/containers/term/exec", spec))["Id"]
    assert _api(docker, "POST", f"/exec/{exec_id}/start", {"Tty": True}) == b"10 20\r\n"
    exec_id = json.loads(_api(docker, "POST", "/containers/term/exec", spec))["Id"]
    started = _api(docker, "POST", f"/exec/{exec_id}/start", {"Tty": True, "ConsoleSize": [11, 21]})
    assert started == b"11 21\r\n"
    # A field exec does not know is refused by name, never dropped.
    status, body = docker.api("POST", "/containers/term/exec", {**spec, "Privilege": True})
    assert status == 400 and b"Privilege is not a field dockyard knows" in body, body
    docker.ok("rm", "-f", "sized", "term")


def _on_terminal(docker: DockerCli, rows: int, cols: int, *args: str) -> tuple[int, bytes]:
    """The docker CLI on a terminal of that size (a pty of the test's): its status and output."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        [DOCKER, *args], stdin=slave, stdout=slave, stderr=slave, env=docker.env, start_new_session=True
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every end of the terminal is closed
                break
            if not chunk:
                break
            out += chunk
        return proc.wait(timeout=30), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_the_docker_clis_terminal_size_is_the_containers_from_its_start(docker: DockerCli) -> None:
    # The docker CLI sends its terminal's size as HostConfig.ConsoleSize; the command's first look
    # at its own terminal sees it (a resize after the start could come too late for it).
    code, out = _on_terminal(docker, 37, 101, "create", "-t", "--name", "sized", "busybox", "stty", "size")
    assert code == 0, out
    assert json.loads(docker.ok("inspect", "sized"))[0]["HostConfig"]["ConsoleSize"] == [37, 101]
    # Two terminals' line disciplines on the way (the container's, the test's): \r\r\n.
    code, out = _on_terminal(docker, 37, 101, "start", "-a", "sized")
    assert (code, out.replace(b"\r", b"")) == (0, b"37 101\n"), out
    code, out = _on_terminal(docker, 29, 83, "run", "-t", "--rm", "busybox", "stty", "size")
    assert (code, out.replace(b"\r", b"")) == (0, b"29 83\n"), out
    docker.ok("rm", "sized")


def test_logs_details_prefix_each_line_as_docker_does(docker: DockerCli) -> None:
    # Docker writes the log driver's extra attributes (key=value,...) and a space before each
    # line; the json-file log has none here, so the prefix is the space alone.
    docker.ok("run", "--name", "talker", "busybox", "sh", "-c", "echo out1; echo err1 >&2; echo out2")
    r = docker.run("logs", "--details", "talker")
    assert (r.returncode, r.stdout, r.stderr) == (0, b" out1\n out2\n", b" err1\n")
    r = docker.run("logs", "--details", "-t", "talker")
    stamp, rest = r.stdout.decode().splitlines()[0].split(" ", 1)
    assert stamp.endswith("Z") and rest == " out1"
    docker.ok("rm", "talker")


def test_query_parameters_dockyard_does_not_honour_are_refused_by_name(docker: DockerCli) -> None:
    docker.ok("create", "--name", "idle", "busybox", "sleep", "300")
    for method, path, name in (
        ("GET", "/containers/json?size=1", b"size"),
        ("GET", "/containers/idle/json?size=true", b"size"),
        ("POST", "/containers/idle/start?checkpoint=c1", b"checkpoint"),
        ("POST", "/containers/idle/stop?signal=SIGINT", b"signal"),
        ("POST", "/containers/idle/restart?signal=SIGINT", b"signal"),
        ("DELETE", "/containers/idle?link=1", b"link"),
        ("POST", "/containers/create?platform=linux/s390x", b"platform"),
    ):
        body = {"Image": "busybox", "Cmd": ["true"]} if path.startswith("/containers/create") else None
        status, answer = docker.api(method, path, body)
        assert status == 400 and name + b" " in answer and b"not supported by dockyard" in answer, (
            path,
            status,
            answer,
        )
    # A body at start (the HostConfig of API < 1.24): refused as Docker refuses it, not dropped.
    status, answer = docker.api("POST", "/containers/idle/start", {"HostConfig": {"Privileged": True}})
    assert status == 400 and b"non-empty request body" in answer, answer
    assert not json.loads(docker.ok("inspect", "idle"))[0]["State"]["Running"]
    # Their zero values ask for nothing: accepted.
    assert docker.api("GET", "/containers/json?size=0")[0] == 200
    assert docker.api("DELETE", "/containers/idle?link=false&v=1")[0] == 204
    assert _names(docker) == []


def test_an_exec_starts_once_its_client_has_taken_the_head(docker: DockerCli) -> None:
    """docker-py parses the 101 head through a buffered reader, then reads the raw socket: output
    sent along with the head stays in that buffer, lost. A client that reads the head late, as
    docker-py does on a loaded machine, still finds the whole output on the socket."""
    docker.ok("run", "-d", "--name", "late", "busybox", "sleep", "300")
    status, body = docker.api(
        "POST", "/containers/late/exec", {"Cmd": ["echo", "after-the-head"], "AttachStdout": True}
    )
    assert status == 201, body
    exec_id = json.loads(body)["Id"]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(docker.socket_path)
        payload = b'{"Detach": false, "Tty": false}'
        sock.sendall(
            f"POST /v1.41/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
            f"Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        # The head is there, unread; an exec started now would write behind it.
        select.select([sock], [], [], 30)
        time.sleep(0.3)
        status, answer = docker.api("GET", f"/exec/{exec_id}/json")
        state = json.loads(answer)
        assert (status, state["Running"], state["ExitCode"]) == (200, False, None), "not started yet"
        head = sock.makefile("rb")  # buffered: takes whatever has arrived, as http.client does
        lines = []
        while (line := head.readline()) not in (b"\r\n", b""):
            lines.append(line)
        assert lines[0].startswith(b"HTTP/1.1 101"), lines
        sock.settimeout(30)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data == struct.pack(">BxxxL", 1, 15) + b"after-the-head\n"
