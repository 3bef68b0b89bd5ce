"""Docker's own clients against dockyardd (issue 13): filters never ignored, every create field
honoured or refused, the endpoints they call. The docker CLI (DOCKER_HOST at the lab's socket)
and docker-py are the judges.

The image named is only recorded (containers run the host's programs until they have a root of
their own): `busybox` need not exist.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lab import Lab

DOCKER = shutil.which("docker") or "/usr/bin/docker"


class DockerCli:
    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env["DOCKER_CONFIG"] = str(tmp / "docker-config")
        self.env["DOCKER_HOST"] = f"unix://{lab.root}/dockyard.sock"

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], capture_output=True, text=True, env=self.env, timeout=timeout)

    def ok(self, *args: str) -> str:
        r = self.run(*args)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout

    def fails(self, *args: str, message: str) -> str:
        r = self.run(*args)
        assert r.returncode != 0, (args, r.stdout)
        assert message in r.stderr, (args, r.stderr)
        return r.stderr


@pytest.fixture
def docker(lab: Lab, tmp_path: Path) -> DockerCli:
    lab.dy_ok("ps")  # the daemon is up
    return DockerCli(lab, tmp_path)


def _names(out: str) -> list[str]:
    return sorted(out.split())


def test_ps_filters_are_never_ignored(lab: Lab, docker: DockerCli) -> None:
    docker.ok("network", "create", "front")
    up = docker.ok("run", "-d", "--name", "up", "--label", "tier=web", "--network", "front", "busybox", "sleep", "300")
    docker.ok("run", "-d", "--name", "done", "--label", "tier=db", "busybox", "true")
    docker.ok("run", "-d", "--name", "failed", "busybox", "sh", "-c", "exit 3")
    docker.ok("create", "--name", "new", "busybox", "true")
    lab.eventually(
        lambda: docker.ok("ps", "-aq", "-f", "status=exited").split().__len__() == 2, what="two exited"
    )
    # The one that matters most: `docker rm -f $(docker ps -aq -f status=exited)` spares running ones.
    assert _names(docker.ok("ps", "-a", "-f", "status=exited", "--format", "{{.Names}}")) == ["done", "failed"]
    assert _names(docker.ok("ps", "-f", "status=running", "--format", "{{.Names}}")) == ["up"]
    assert _names(docker.ok("ps", "-a", "-f", "status=created", "--format", "{{.Names}}")) == ["new"]
    assert _names(docker.ok("ps", "-a", "-f", "exited=3", "--format", "{{.Names}}")) == ["failed"]
    assert _names(docker.ok("ps", "-a", "-f", "label=tier", "--format", "{{.Names}}")) == ["done", "up"]
    assert _names(docker.ok("ps", "-a", "-f", "label=tier=db", "--format", "{{.Names}}")) == ["done"]
    assert _names(docker.ok("ps", "-a", "-f", "name=^/do", "--format", "{{.Names}}")) == ["done"]
    assert _names(docker.ok("ps", "-a", "-f", f"id={up[:10]}", "--format", "{{.Names}}")) == ["up"]
    assert _names(docker.ok("ps", "-a", "-f", "network=front", "--format", "{{.Names}}")) == ["up"]
    assert _names(docker.ok("ps", "-a", "-f", "before=new", "--format", "{{.Names}}")) == ["done", "failed", "up"]
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
    assert info["Config"]["Image"] == "busybox" and info["Image"] == "busybox"
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
