"""The daemon and its settings: start/stop/status, --bridge/--bip, daemon.json, thin clients."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from lab import DOCKYARD, Lab, pid_alive


def test_daemon_start_status_stop(lab: Lab) -> None:
    r = lab.dy("daemon", "status")
    assert r.returncode == 1 and "not running" in r.stderr
    assert "started" in lab.dy_ok("daemon", "start")
    pid = int((lab.root / "dockyardd.pid").read_text())
    assert pid_alive(pid)
    assert "is running" in lab.dy_ok("daemon", "status")
    assert "already running" in lab.dy_ok("daemon", "start")
    assert lab.dy_ok("daemon", "stop").strip() == "dockyardd stopped"
    assert not pid_alive(pid)
    assert not (lab.root / "dockyard.sock").exists()
    assert "not running" in lab.dy_ok("daemon", "stop")


def test_any_command_starts_the_daemon_and_logs(lab: Lab) -> None:
    assert lab.dy_ok("ps", "-q") == ""
    assert (lab.root / "dockyard.sock").exists()
    assert "serving" in (lab.root / "daemon.log").read_text()


def test_daemon_run_in_the_foreground(lab: Lab) -> None:
    cmd = [*DOCKYARD, "--root", str(lab.root), "--host-netns", lab.host, "daemon", "run"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.procs.append(p)
    assert p.stderr is not None
    while "serving" not in (line := p.stderr.readline()):
        assert line, "daemon ended before serving"
    assert lab.dy_ok("run", "--rm", "echo", "hi").strip() == "hi"
    p.terminate()
    assert p.wait(timeout=20) == 0


def test_bridge_and_bip_flags(lab: Lab) -> None:
    out = lab.dy_ok(
        "--bridge", "br-lab", "--bip", "10.99.0.1/24", "run", "--rm", "ip", "-4", "-o", "addr", "show", "eth0"
    )
    addr = ipaddress.IPv4Interface(out.split()[3])
    assert addr.network == ipaddress.IPv4Network("10.99.0.0/24") and addr.ip != ipaddress.IPv4Address(
        "10.99.0.1"
    )
    host = json.loads(lab.in_host("ip", "-j", "addr", "show", "br-lab").stdout)[0]
    assert [a["local"] for a in host["addr_info"] if a["family"] == "inet"] == ["10.99.0.1"]
    assert "dockyard0" not in lab.links()
    # Changing them while a container is attached is refused, and nothing changes.
    lab.run_d("--name", "attached", "sleep", "300")
    r = lab.dy("--bip", "10.98.0.1/24", "ps")
    assert r.returncode == 125 and "while containers are attached to br-lab (attached)" in r.stderr
    assert lab.ip_of("attached").startswith("10.99.0.")
    lab.dy_ok("rm", "-f", "attached")
    lab.eventually(lambda: not [n for n in lab.links() if n.startswith("veth")], what="veth gone")
    # Once free, the bridge can move; the old one goes.
    lab.dy_ok("--bridge", "dockyard0", "--bip", "10.98.0.1/24", "ps")
    assert "br-lab" not in lab.links() and "dockyard0" in lab.links()


def test_bip_is_validated(lab: Lab) -> None:
    r = lab.dy("--bip", "10.99.0.0/24", "ps")
    assert r.returncode == 125 and "network or broadcast" in r.stderr
    r = lab.dy("--bip", "nonsense", "ps")
    assert r.returncode == 125 and "invalid --bip" in r.stderr
    r = lab.dy("--bridge", "a-name-longer-than-15", "ps")
    assert r.returncode == 125 and "1 to 15 bytes" in r.stderr


def test_daemon_json_sets_bridge_and_bip(lab: Lab) -> None:
    lab.root.mkdir(parents=True)
    (lab.root / "daemon.json").write_text(json.dumps({"bridge": "br-json", "bip": "10.77.0.1/16"}))
    out = lab.dy_ok("run", "--rm", "ip", "-4", "-o", "addr", "show", "eth0")
    assert out.split()[3].startswith("10.77.")
    assert "br-json" in lab.links()


def test_default_subnet_skips_a_host_route(lab: Lab) -> None:
    # The host already routes 172.17.0.0/16 elsewhere: the next free /16 is taken.
    lab.in_host("ip", "route", "add", "172.17.0.0/16", "via", "198.51.100.2")
    out = lab.dy_ok("run", "--rm", "ip", "-4", "-o", "addr", "show", "eth0")
    assert ipaddress.IPv4Interface(out.split()[3]).network == ipaddress.IPv4Network("172.18.0.0/16")


# Runs one command in-process and writes, at exit, every module it loaded.
_MODULES_AT_EXIT = """
import atexit, sys
out, argv = sys.argv[1], sys.argv[2:]

def dump():
    with open(out, "w") as f:
        f.write("\\n".join(sorted(sys.modules)))

atexit.register(dump)
from dockyard.clients.cli import main
sys.exit(main(argv))
"""
THIN_CLIENT_MODULES = {
    "dockyard",
    "dockyard.clients",
    "dockyard.clients.api",
    "dockyard.clients.daemon_control",
    "dockyard.clients.explain_calls",
    "dockyard.clients.image_calls",
    "dockyard.clients.wire",
    "dockyard.errors",
    "dockyard.locations",
    # The HTTP framing, shared with the daemon: stdlib only.
    "dockyard.wire",
    "dockyard.wire.http",
}


def _loaded_by(tmp: Path, argv: list[str]) -> tuple[int, set[str]]:
    out = tmp / "modules.txt"
    r = subprocess.run(
        [sys.executable, "-c", _MODULES_AT_EXIT, str(out), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return r.returncode, set(out.read_text().split())


def test_the_cli_is_a_thin_client(lab: Lab, tmp_path: Path) -> None:
    """ps, run (foreground and -d), exec and --help load the stdlib and the client side only."""
    lab.dy_ok("ps")
    # What the bare interpreter loads before any of ours (site hooks of the venv) is not ours.
    bare = tmp_path / "bare.txt"
    subprocess.run(
        [sys.executable, "-c", f"import sys; open({str(bare)!r}, 'w').write(chr(10).join(sys.modules))"],
        check=True,
        timeout=30,
    )
    baseline = set(bare.read_text().split())
    target = ["--root", str(lab.root), "--host-netns", lab.host]
    commands = {
        "ps": [*target, "ps"],
        "run": [*target, "run", "--rm", "true"],
        "run -d": [*target, "run", "-d", "--name", "thin", "sleep", "300"],
        "exec": [*target, "exec", "thin", "true"],
        "--help": ["--help"],
    }
    for what, argv in commands.items():
        code, modules = _loaded_by(tmp_path, argv)
        assert code == 0, what
        foreign = sorted(
            m
            for m in modules - baseline
            if m.split(".")[0] not in sys.stdlib_module_names
            and m not in THIN_CLIENT_MODULES
            and not m.startswith("dockyard.clients.cli")
        )
        assert foreign == [], f"dockyard {what} loaded {foreign}"
        # The stdlib's heavy part that is the daemon's alone.
        assert "sqlite3" not in modules, what
        # And the check sees what it should: the client is there, the engine is not.
        assert {"dockyard.clients.cli", "dockyard.clients.api"} <= modules or what == "--help", (
            what,
            modules,
        )
        assert not {"dockyard.engine", "dockyard.store", "pyroute2", "nftables"} & modules, what
        if what == "--help":  # no daemon to talk to: no client, socket, JSON or shutil either
            heavy = {"dockyard.clients.api", "dockyard.wire.http", "socket", "json", "shutil"}
            assert not heavy & (modules - baseline), sorted(heavy & modules)


def test_the_monitor_logs_a_failure_with_its_traceback_and_goes_on(lab: Lab) -> None:
    """The monitor restarts a resolver that died. One that cannot start (its pid file is a
    link, which it refuses to follow) fails every round: the daemon log has the failure in
    full, and once the link is gone the monitor, still running, starts the resolver."""
    lab.dy_ok("network", "create", "watched")
    pid_file, log = lab.root / "dns.pid", lab.root / "daemon.log"
    old = int(pid_file.read_text())
    planted = lab.root / "planted"
    planted.symlink_to(lab.tmp / "nowhere")
    os.rename(planted, pid_file)  # at once: no resolver can start from here on
    os.kill(old, signal.SIGKILL)
    failed = "monitor: restarting the DNS resolver failed\n"
    lab.eventually(lambda: failed in log.read_text(), timeout=30, what="the monitor's failure logged")
    text = log.read_text()
    assert f"cannot open {pid_file}: Too many levels of symbolic links" in text, text
    after = text.split(failed, 1)[1]
    assert after.startswith("Traceback (most recent call last):\n"), after
    assert "dockyard.errors.KernelError: the DNS resolver exited with status 1" in after.split("\n\n")[0], (
        after
    )

    pid_file.unlink()

    def resolver_back() -> bool:
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return False
        return pid != old and pid_alive(pid)

    lab.eventually(resolver_back, timeout=30, what="the resolver started again by the monitor")
    lab.eventually(
        lambda: "monitor: restarting the DNS resolver succeeded again" in log.read_text(),
        timeout=10,
        what="the recovery logged",
    )
    assert lab.dy_ok("network", "rm", "watched").strip() == "watched"
