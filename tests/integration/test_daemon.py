"""The daemon and its settings: start/stop/status, --bridge/--bip, daemon.json, thin clients."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys

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


def test_the_cli_is_a_thin_client(lab: Lab) -> None:
    lab.dy_ok("ps")
    probe = (
        "import sys\n"
        "from dockyard.cli import main\n"
        f"code = main(['--root', {str(lab.root)!r}, '--host-netns', {lab.host!r}, 'ps'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'nftables', 'sqlite3'))\n"
        "engine = sorted(m for m in sys.modules if m in ('dockyard.engine', 'dockyard.store', 'dockyard.kernel.netlink'))\n"
        "print(code, heavy, engine)\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert r.stdout.split("\n")[-2] == "0 [] []", r.stdout + r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dockyard.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint(sorted(m for m in sys.modules if m.startswith(('pyroute2', 'nftables'))))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.stdout.strip().splitlines()[-1] == "[]"
