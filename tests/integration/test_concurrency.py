"""Many clients at once: no double booking, nothing half-made, reads never wait on writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lab import DOCKYARD, Lab


def _cmd(lab: Lab, *args: str) -> list[str]:
    return [*DOCKYARD, "--root", str(lab.root), "--host-netns", lab.host, *args]


def _all(lab: Lab, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_32_runs_at_once_then_32_removals_at_once(lab: Lab) -> None:
    lab.dy_ok("network", "create", "--subnet", "10.91.0.0/24", "busy")
    results = _all(lab, [_cmd(lab, "run", "-d", "--net", "busy", "sleep", "300") for _ in range(32)])
    assert [r.returncode for r in results] == [0] * 32, [r.stderr for r in results if r.returncode]
    assert not any("locked" in r.stderr for r in results)
    ids = [r.stdout.strip() for r in results]
    addresses = [lab.inspect(i)["NetworkSettings"]["Networks"]["busy"]["IPAddress"] for i in ids]
    assert len(set(addresses)) == 32
    assert len([n for n in lab.links() if n.startswith("veth")]) == 32
    results = _all(lab, [_cmd(lab, "rm", "-f", i) for i in ids])
    assert [r.returncode for r in results] == [0] * 32, [r.stderr for r in results if r.returncode]
    assert lab.dy_ok("ps", "-aq") == ""
    lab.dy_ok("system", "gc")
    assert not [n for n in lab.links() if n.startswith("veth")]
    assert not os.listdir(lab.root / "netns")


def test_run_racing_network_rm_never_leaves_half_made_state(lab: Lab) -> None:
    for round_ in range(6):
        name = f"race{round_}"
        lab.dy_ok("network", "create", name)
        run, rm = _all(
            lab, [_cmd(lab, "run", "-d", "--net", name, "sleep", "300"), _cmd(lab, "network", "rm", name)]
        )
        networks = [line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]]
        if rm.returncode == 0:
            # The network went first: the run was refused, and left nothing.
            assert name not in networks
            assert run.returncode == 125 and "not found" in run.stderr, run.stderr
        else:
            # The run won: both are alive and the container is on the network.
            assert run.returncode == 0 and "active endpoints" in rm.stderr
            info = lab.inspect(run.stdout.strip())
            assert info["State"]["Running"] and name in info["NetworkSettings"]["Networks"]
            lab.dy_ok("rm", "-f", run.stdout.strip())
        lab.dy_ok("system", "gc")
        lab.dy("network", "rm", name)
        assert not [n for n in lab.links() if n.startswith("veth")]
        assert lab.dy_ok("ps", "-aq") == ""


def test_a_slow_run_does_not_block_reads(lab: Lab) -> None:
    lab.root.mkdir(parents=True)
    # The start is held at its spawn step until the test has read: a gate, not a clock.
    gate = lab.root.parent / "spawn-gate"
    env = {**os.environ, "DOCKYARD_DELAY": f"run.spawn={gate}"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "dockyard.daemon.main", "--root", str(lab.root), "--host-netns", lab.host],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lab.procs.append(daemon)
    assert daemon.stderr is not None
    while "dockyardd" not in (line := daemon.stderr.readline()) or "serving" not in line:
        assert line
    slow = subprocess.Popen(
        _cmd(lab, "run", "-d", "--name", "slow", "sleep", "300"), stdout=subprocess.PIPE, text=True
    )
    lab.eventually(lambda: "slow" in lab.dy_ok("ps", "-a"), what="the slow container recorded")
    # While its start is held up, reads answer at once.
    ps = lab.dy("ps", "-a")
    info = lab.dy("inspect", "slow")
    nets = lab.dy("network", "ls")
    assert slow.poll() is None, "the run finished before the reads: the test proves nothing"
    assert ps.returncode == 0 and info.returncode == 0 and nets.returncode == 0
    assert json.loads(info.stdout)[0]["State"]["Status"] == "created"
    gate.touch()
    assert slow.wait(timeout=60) == 0
    lab.dy_ok("daemon", "stop")


@pytest.mark.parametrize(
    ("contested", "refusal"),
    [
        (["-p", "8080:80"], "Bind for 0.0.0.0:8080/tcp failed: port is already allocated"),
        (["--name", "same"], 'the container name "/same" is already in use'),
        (["--net", "racers", "--ip", "10.65.0.99"], "address 10.65.0.99 is already in use"),
    ],
    ids=["host-port", "name", "ip"],
)
def test_one_winner_when_runs_race_for_the_same_thing(lab: Lab, contested: list[str], refusal: str) -> None:
    lab.dy_ok("ps")
    if "--net" in contested:  # an address is chosen on a user network only, as with Docker
        lab.dy_ok("network", "create", "--subnet", "10.65.0.0/24", "racers")
    n = 8
    results = _all(lab, [_cmd(lab, "run", "-d", *contested, "sleep", "300") for _ in range(n)])
    winners = [r for r in results if r.returncode == 0]
    assert len(winners) == 1, [(r.returncode, r.stderr) for r in results]
    for r in results:
        if r.returncode != 0:
            assert r.returncode == 125 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("dockyard: ") and refusal in lines[0], r.stderr
    winner = winners[0].stdout.strip()
    info = lab.inspect(winner)
    assert info["State"]["Running"]
    network = "racers" if "--net" in contested else "bridge"
    address = info["NetworkSettings"]["Networks"][network]["IPAddress"]
    if "--name" in contested:
        assert info["Name"] == "/same"
    if "--ip" in contested:
        assert address == "10.65.0.99"
    # Nothing half-made by the losers: one record, one veth, one sandbox pin, one
    # container directory, only the winner's port elements, and nothing for gc.
    assert lab.dy_ok("ps", "-aq", "--no-trunc").split() == [winner]
    assert len([name for name in lab.links() if name.startswith("veth")]) == 1
    assert os.listdir(lab.root / "netns") == [winner[:16]]
    assert os.listdir(lab.root / "containers") == [winner]
    expected = [[{"concat": ["tcp", 8080]}, {"concat": [address, 80]}]] if "-p" in contested else []
    assert lab.map_elements("publish_any") == expected
    assert lab.dy_ok("system", "gc").strip() == "nothing to remove"


def test_first_commands_at_once_start_one_daemon(lab: Lab) -> None:
    """No daemon runs yet and several commands start at once: each auto-starts one,
    one of them takes the root, and every command is answered by it."""
    results = _all(lab, [_cmd(lab, "ps", "-q") for _ in range(6)])
    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results if r.returncode]
    assert all(r.stderr == "" for r in results), [r.stderr for r in results]
    pid = int((lab.root / "dockyardd.pid").read_text())
    assert f"(pid {pid})" in lab.dy_ok("daemon", "status")
