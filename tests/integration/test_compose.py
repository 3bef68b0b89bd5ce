"""A Compose project against dockyardd: Debian's docker-compose 1.29 is the judge.

Three services on two networks, one of them internal: web publishes a port
(reached from the lab's upstream namespace) and is on both; app, on the
internal network only, reaches web by its service name; db just runs.
`up -d`, `ps`, `logs`, `restart` and `down`, which leaves nothing (the lab's
leak check). The services run on a busybox image the test imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from images_lab import busybox_tarball
from lab import HOST_ADDR, Lab

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
DOCKER = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else (shutil.which("docker") or "docker")
PROJECT = textwrap.dedent(
    """
    version: "3.8"
    services:
      web:
        image: busybox
        command: ["sh", "-c", "echo hello from web > /tmp/index.html && exec httpd -f -p 80 -h /tmp"]
        ports: ["8080:80"]
        networks: [front, private]
      app:
        image: busybox
        command:
          - sh
          - -c
          - "while true; do if wget -q -O- http://web/; then echo reached; else echo missed; fi; sleep 1; done"
        networks: [private]
      db:
        image: busybox
        command: ["sleep", "300"]
        networks: [private]
    networks:
      front: {}
      private:
        internal: true
    """
)


class Compose:
    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.dir = tmp / "project"
        self.dir.mkdir()
        (self.dir / "docker-compose.yml").write_text(PROJECT)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
        self.env["DOCKER_HOST"] = f"unix://{lab.root}/dockyard.sock"
        self.env["DOCKER_CONFIG"] = str(tmp / "docker-config")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [COMPOSE, "--no-ansi", "-p", "demo", *args],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def ok(self, *args: str) -> str:
        r = self.run(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout


@pytest.fixture
def compose(lab: Lab, tmp_path: Path) -> Compose:
    lab.dy_ok("ps")  # the daemon is up
    c = Compose(lab, tmp_path)
    r = subprocess.run(
        [DOCKER, "import", "-", "busybox:latest"], input=busybox_tarball(), capture_output=True, env=c.env
    )
    assert r.returncode == 0, r.stderr
    return c


def test_a_compose_project_comes_up_works_and_goes(lab: Lab, compose: Compose) -> None:
    compose.ok("up", "-d")
    states = {line.split()[0]: line for line in compose.ok("ps").splitlines()[2:] if line.strip()}
    assert sorted(states) == ["demo_app_1", "demo_db_1", "demo_web_1"]
    assert all(" Up " in line or line.rstrip().endswith("Up") for line in states.values()), states
    assert "0.0.0.0:8080->80/tcp" in states["demo_web_1"]

    # The published port, from outside; app reaches web by its service name on the internal network.
    page = lab.in_ns(lab.up, "curl", "-sS", "--max-time", "10", f"http://{HOST_ADDR}:8080/")
    assert page.returncode == 0 and page.stdout == "hello from web\n", page.stderr
    lab.eventually(lambda: "reached" in compose.ok("logs", "app"), 20, "app reaching web by name")
    networks = {line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]}
    assert {"demo_front", "demo_private"} <= networks
    assert lab.inspect("demo_db_1")["NetworkSettings"]["Networks"].keys() == {"demo_private"}

    before = lab.inspect("demo_db_1")["State"]["StartedAt"]
    compose.ok("restart", "db")
    after = lab.inspect("demo_db_1")["State"]
    assert after["Running"] and after["StartedAt"] != before

    compose.ok("down")
    assert lab.dy_ok("ps", "-aq").split() == []
    networks = {line.split()[1] for line in lab.dy_ok("network", "ls").splitlines()[1:]}
    assert not {"demo_front", "demo_private"} & networks
