"""Bad input: one line on stderr, exit 125 (126/127 for the command), and nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from lab import DOCKYARD, REPO, Lab


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
    lab.dy_ok("system", "gc")
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
    lab.run_d("--name", "pinned", "--ip", "172.17.0.50", "sleep", "300")
    assert lab.ip_of("pinned") == "172.17.0.50"
    _fails(
        lab,
        "run",
        "--rm",
        "--ip",
        "10.0.0.5",
        "true",
        message="is not a usable address of subnet 172.17.0.0/16",
    )
    _fails(lab, "run", "--rm", "--ip", "172.17.0.50", "true", message="address 172.17.0.50 is already in use")
    _fails(lab, "run", "--rm", "--ip", "172.17.0.1", "true", message="gateway")
    _fails(lab, "run", "--rm", "--ip", "not-an-ip", "true", message="invalid --ip")


def test_host_port_already_published_or_used(lab: Lab) -> None:
    lab.run_d("--name", "first", "-p", "8080:80", "sleep", "300")
    _fails(lab, "run", "--rm", "-p", "8080:80", "true", message="port is already allocated")
    # A host process holds a port: publishing it fails the way Docker's does.
    holder = lab.spawn_in(
        lab.host,
        sys.executable,
        "-c",
        "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 8090)); s.listen(); print('ok', flush=True); time.sleep(60)",
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
    _fails(lab, "run", "--rm", "-p", "8090:80", "true", message="address already in use")


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
    opened = [p for p in [lab.root, *lab.root.parents] if p.stat().st_mode & 0o005 != 0o005]
    modes = {p: p.stat().st_mode & 0o7777 for p in opened}
    for p in opened:
        os.chmod(p, modes[p] | 0o005)
    os.chmod(sock, 0o666)
    probe = textwrap.dedent(f"""
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.connect({str(sock)!r})
        s.sendall(b"GET /containers/json HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        print(s.recv(4096).decode().splitlines()[0])
    """)
    try:
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)
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


def test_daemon_unreachable_is_reported(lab: Lab) -> None:
    env = {**os.environ}
    r = subprocess.run(
        [*DOCKYARD, "--root", "/proc/nonexistent/dockyard", "ps"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert r.returncode == 125
    assert r.stderr.startswith("dockyard: ") and "Traceback" not in r.stderr


def test_debug_shows_the_traceback(lab: Lab) -> None:
    r = lab.dy("--debug", "run", "--rm", "--net", "nosuchnet", "true")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_inspect_reports_json_for_found_ones(lab: Lab) -> None:
    lab.run_d("--name", "there", "sleep", "300")
    r = lab.dy("inspect", "there", "nosuch")
    assert r.returncode == 125
    assert [c["Name"] for c in json.loads(r.stdout)] == ["/there"]
