"""Bad input: one line on stderr, exit 125 (126/127 for the command), and nothing changed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from lab import DOCKYARD, HOST_ADDR, REPO, Lab, pid_alive


def _state(lab: Lab) -> tuple[str, list, list, list[str]]:
    return (
        lab.dy_ok("ps", "-aq"),
        lab.map_elements("publish_any"),
        lab.map_elements("publish_addr"),
        [n for n in lab.links() if n.startswith("veth")],
    )


def _fails(lab: Lab, *args: str, code: int = 125, message: str) -> None:
    before = _state(lab)
    r = lab.dy(*args)
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockyard: "), r.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    # Compared before any gc: a leak that gc would repair must fail here.
    assert _state(lab) == before
    assert lab.dy_ok("system", "gc").strip() == "nothing to remove"
    assert _state(lab) == before


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("70000", "outside 1-65535"),
        ("80:", "no container port"),
        ("a:b", "invalid"),
        ("8000-8002:80-81", "must be equal"),
        ("80/icmp", "unknown protocol 'icmp'"),
        ("1.2.3:80:80", "invalid host address"),
    ],
)
def test_malformed_publish_spec(lab: Lab, spec: str, message: str) -> None:
    lab.dy_ok("ps")
    _fails(lab, "run", "--rm", "-p", spec, "true", message=message)


def test_unknown_network_and_container(lab: Lab) -> None:
    lab.dy_ok("ps")
    _fails(lab, "run", "--rm", "--net", "nosuchnet", "true", message="network nosuchnet not found")
    _fails(lab, "inspect", "nosuch", message="no such container: nosuch")
    _fails(lab, "stop", "nosuch", message="no such container: nosuch")
    _fails(lab, "rm", "nosuch", message="no such container: nosuch")
    _fails(lab, "exec", "nosuch", "true", message="no such container: nosuch")
    _fails(lab, "network", "inspect", "nosuchnet", message="network nosuchnet not found")


def test_name_in_use(lab: Lab) -> None:
    lab.run_d("--name", "taken", "sleep", "300")
    _fails(lab, "run", "--name", "taken", "true", message='the container name "/taken" is already in use')
    _fails(lab, "run", "--name", "bad/name", "true", message="invalid container name")


def test_ip_outside_the_subnet_or_taken(lab: Lab) -> None:
    # As Docker: an address is chosen on a user network only.
    _fails(
        lab, "run", "--rm", "--ip", "172.17.0.50", "true", message="user specified IP address is supported"
    )
    lab.dy_ok("network", "create", "--subnet", "10.66.0.0/16", "--gateway", "10.66.0.1", "pinning")
    lab.run_d("--name", "pinned", "--net", "pinning", "--ip", "10.66.0.50", "sleep", "300")
    assert lab.inspect("pinned")["NetworkSettings"]["Networks"]["pinning"]["IPAddress"] == "10.66.0.50"
    net = ("--net", "pinning")
    _fails(
        lab,
        "run",
        "--rm",
        *net,
        "--ip",
        "10.0.0.5",
        "true",
        message="is not a usable address of subnet 10.66.0.0/16",
    )
    _fails(
        lab, "run", "--rm", *net, "--ip", "10.66.0.50", "true", message="address 10.66.0.50 is already in use"
    )
    _fails(lab, "run", "--rm", *net, "--ip", "10.66.0.1", "true", message="gateway")
    _fails(lab, "run", "--rm", *net, "--ip", "not-an-ip", "true", message="invalid --ip")


def test_host_port_already_published_or_used(lab: Lab) -> None:
    lab.run_d("--name", "first", "-p", "8080:80", "sleep", "300")
    _fails(lab, "run", "--rm", "-p", "8080:80", "true", message="port is already allocated")
    # A host process holds a port: publishing it fails the way Docker's does.
    lab.hold_port(8090)
    _fails(lab, "run", "--rm", "-p", "8090:80", "true", message="address already in use")


def test_a_port_in_use_inside_a_long_range(lab: Lab) -> None:
    """A port in the middle of a long range (probed in one call, PortHolds.reserve_many) that a
    host process holds fails the start as a port asked alone does, before a clash with another
    container that the request names after it, and changes nothing."""
    lab.run_d("--name", "first", "-p", "8080:80", "sleep", "300")
    lab.hold_port(30150)
    refused = "cannot publish 0.0.0.0:30150/tcp: address already in use by another process"
    _fails(lab, "run", "--rm", "-p", "30001-30200:30001-30200", "true", message=refused)
    _fails(lab, "run", "--rm", "-p", "30001-30200:30001-30200", "-p", "8080:80", "true", message=refused)
    # Control: a range the host refuses nothing of, and the clash after it is the error.
    allocated = "Bind for 0.0.0.0:8080/tcp failed: port is already allocated"
    _fails(lab, "run", "--rm", "-p", "30201-30400:30201-30400", "-p", "8080:80", "true", message=allocated)


NOT_HERE = "cannot publish on 10.9.9.9: it is not an address of this host (cannot assign requested address)"


@pytest.mark.parametrize(
    ("spec", "published"),
    [
        ("10.9.9.9:8080:80", "80/tcp -> 10.9.9.9:8080"),
        ("10.9.9.9::80", "80/tcp -> 10.9.9.9:"),
        ("10.9.9.9:8000-8999:80/udp", "80/udp -> 10.9.9.9:8000"),
    ],
)
def test_publishing_on_an_address_the_host_lacks(lab: Lab, spec: str, published: str) -> None:
    """Not "address already in use", nor a scan of the whole range ending in
    "no free host port left": the address is not the host's."""
    lab.dy_ok("ps")
    _fails(lab, "run", "--rm", "-p", spec, "true", message=NOT_HERE)
    # Control: once the host has the address, the same spec publishes.
    assert lab.in_host("ip", "addr", "add", "10.9.9.9/32", "dev", "up0").returncode == 0
    cid = lab.run_d("-p", spec, "sleep", "300")
    (line,) = lab.dy_ok("port", cid).strip().splitlines()
    assert line.startswith(published), line


def test_localhost_and_every_address_overlap(lab: Lab) -> None:
    """127.0.0.1:P and 0.0.0.0:P are one port, in either order: refused by
    dockyard's own records, before the kernel would be asked."""
    lab.run_d("--name", "lo", "-p", "127.0.0.1:8080:80", "sleep", "300")
    allocated = "failed: port is already allocated"
    _fails(lab, "run", "--rm", "-p", "8080:80", "true", message=f"Bind for 0.0.0.0:8080/tcp {allocated}")
    lab.run_d("--name", "all", "-p", "8081:80", "sleep", "300")
    spec = "127.0.0.1:8081:80"
    _fails(lab, "run", "--rm", "-p", spec, "true", message=f"Bind for 127.0.0.1:8081/tcp {allocated}")
    # Control: another address, or another protocol, is another port.
    lab.run_d("--name", "other", "-p", f"{HOST_ADDR}:8080:80", "-p", "8081:80/udp", "sleep", "300")
    assert lab.dy_ok("port", "other").strip().splitlines() == [
        f"80/tcp -> {HOST_ADDR}:8080",
        "80/udp -> 0.0.0.0:8081",
    ]


def test_published_port_is_really_taken_on_the_host(lab: Lab) -> None:
    lab.run_d("-p", "8085:80", "sleep", "300")
    r = lab.in_host(
        sys.executable,
        "-c",
        "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8085)); s.listen()",
    )
    assert r.returncode != 0 and "Address already in use" in r.stderr


def test_command_not_found_or_not_executable(lab: Lab) -> None:
    lab.dy_ok("ps")
    r = lab.dy("run", "--rm", "nosuchcommand")
    assert r.returncode == 127
    assert r.stderr.strip() == 'dockyard: exec: "nosuchcommand": executable file not found in $PATH'
    r = lab.dy("run", "--rm", "/etc/hostname")
    assert r.returncode == 126 and "permission denied" in r.stderr
    assert lab.dy_ok("ps", "-aq") == ""
    assert not [n for n in lab.links() if n.startswith("veth")]
    # Without --rm the container stays, exited with 127, as Docker leaves it.
    lab.dy("run", "--name", "missing", "nosuchcommand")
    assert lab.inspect("missing")["State"]["ExitCode"] == 127


def test_container_mode_needs_a_target_name(lab: Lab) -> None:
    lab.dy_ok("ps")
    _fails(lab, "run", "--rm", "--net", "container:", "true", message="name the container")


def test_run_needs_a_command(lab: Lab) -> None:
    lab.dy_ok("ps")
    _fails(lab, "run", "--rm", message="requires a command")


def test_not_root_is_refused(lab: Lab) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            *DOCKYARD,
            "--root",
            str(lab.root),
            "ps",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert r.returncode == 125
    assert r.stderr.strip().startswith("dockyard: dockyard needs root")


def test_daemon_socket_admits_only_root(lab: Lab) -> None:
    lab.dy_ok("ps")
    sock = lab.root / "dockyard.sock"
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    # Even with the file mode opened up, the daemon checks the peer's credentials.
    # The unprivileged peer reaches the socket through an O_PATH descriptor
    # (/proc/self/fd/N), not through the directories above $ROOT: those are
    # shared with other tests and sessions (pytest's), whose modes are not ours to open.
    os.chmod(sock, 0o666)
    fd = os.open(sock, os.O_PATH)
    probe = textwrap.dedent(f"""
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.connect("/proc/self/fd/{fd}")
        s.sendall(b"GET /containers/json HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        print(s.recv(4096).decode().splitlines()[0])
    """)
    try:
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=30,
            pass_fds=(fd,),
        )
    finally:
        os.close(fd)
    assert r.stdout.strip() == "HTTP/1.1 403 Forbidden", r.stderr


def test_nftables_missing_is_reported(lab: Lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The daemon cannot load libnftables: the client says so and how to fix it."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "nftables.py").write_text(
        "class Nftables:\n    def __init__(self):\n        raise OSError('libnftables.so.1: cannot open shared object file')\n"
    )
    r = lab.dy("ps", env={"PYTHONPATH": f"{shadow}:{REPO / 'src'}"})
    assert r.returncode == 125
    assert "install the nftables package" in r.stderr and "Traceback" not in r.stderr


def _one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 125, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockyard: "), r.stderr
    return lines[0]


def test_pyroute2_missing_is_reported(lab: Lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The daemon cannot import pyroute2: the client says which package and how to get it."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    # Found before the installed package, and failing the way a missing one does.
    (shadow / "pyroute2.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pyroute2'\", name='pyroute2')\n"
    )
    r = lab.dy("ps", env={"PYTHONPATH": f"{shadow}:{REPO / 'src'}"})
    line = _one_error_line(r)
    assert "the daemon failed to start" in line and "missing (pyroute2)" in line, line
    assert "make deps, or pip install dockyard" in line, line
    assert not (lab.root / "dockyard.sock").exists()


def test_an_unusable_root_is_reported(lab: Lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--root where no state directory can be: the message says so and names the option."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    for root, why in (
        ("/proc/nonexistent/dockyard", "No such file or directory"),
        (str(a_file), "Not a directory"),
    ):
        r = subprocess.run(
            [*DOCKYARD, "--root", root, "--host-netns", lab.host, "ps"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        line = _one_error_line(r)
        assert root in line and why in line and "--root" in line, line
    assert a_file.read_text() == "not a directory\n"


def test_a_daemon_that_cannot_start_is_reported(lab: Lab) -> None:
    """The auto-started daemon fails (no such host namespace): its reason, and what to do."""
    r = subprocess.run(
        [*DOCKYARD, "--root", str(lab.root), "--host-netns", "dyt-no-such-ns", "ps"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = _one_error_line(r)
    assert "the daemon failed to start: host network namespace dyt-no-such-ns not found" in line, line
    assert "ip netns add" in line and "--host-netns" in line, line
    assert not (lab.root / "dockyard.sock").exists() and not (lab.root / "dockyardd.pid").exists()


def test_a_socket_that_refuses_is_reported(lab: Lab) -> None:
    """A live daemon holds the root, but its socket refuses connections: no second daemon
    starts, and the message names the one to stop. Following it, the next command works."""
    lab.dy_ok("ps")
    pid = int((lab.root / "dockyardd.pid").read_text())
    sock = lab.root / "dockyard.sock"
    sock.unlink()
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(sock))  # bound, never listening: connect() gets ECONNREFUSED
    dead.close()
    line = _one_error_line(lab.dy("ps"))
    assert f"dockyardd (pid {pid}) holds {lab.root} but does not answer on {sock}" in line, line
    assert f"kill {pid}" in line, line
    assert int((lab.root / "dockyardd.pid").read_text()) == pid
    os.kill(pid, signal.SIGTERM)
    lab.eventually(lambda: not pid_alive(pid), timeout=20, what="the old daemon gone")
    assert lab.dy_ok("ps", "-q") == ""


def test_debug_shows_the_traceback(lab: Lab) -> None:
    r = lab.dy("--debug", "run", "--rm", "--net", "nosuchnet", "true")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_inspect_reports_json_for_found_ones(lab: Lab) -> None:
    lab.run_d("--name", "there", "sleep", "300")
    r = lab.dy("inspect", "there", "nosuch")
    assert r.returncode == 125
    assert [c["Name"] for c in json.loads(r.stdout)] == ["/there"]
