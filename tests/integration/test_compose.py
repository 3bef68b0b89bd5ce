"""A Compose project against dockyardd: Debian's docker-compose 1.29 is the judge.

Three services on two networks, one of them internal: web publishes a port
(reached from the lab's upstream namespace) and is on both; app, on the
internal network only, reaches web by its service name; db just runs.
`up -d`, `ps`, `logs`, `restart` and `down`, which leaves nothing (the lab's
leak check). The services run on a busybox image the test imports.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest

from docker_cli import DockerCli
from images_lab import busybox_tarball
from lab import HOST_ADDR, Lab

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
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


# Services with no command: each runs its image's own Cmd, with its image's Env and WorkingDir.
DEFAULTS_PROJECT = textwrap.dedent(
    """
    version: "3.8"
    services:
      site:
        image: site:1
        ports: ["8081:80"]
      probe:
        image: probe:1
    """
)


class Compose:
    def __init__(self, lab: Lab, tmp: Path, project: str = PROJECT) -> None:
        self.dir = tmp / "project"
        self.dir.mkdir()
        (self.dir / "docker-compose.yml").write_text(project)
        self.docker = DockerCli(lab, tmp)
        self.env = self.docker.env

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
    c.docker.import_image("busybox:latest")
    return c


def _with_file(tarball: bytes, name: str, data: bytes) -> bytes:
    """The root file system tarball with one file more."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(tarball)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        dst.addfile(info, io.BytesIO(data))
    return out.getvalue()


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


def test_services_without_a_command_run_their_images_defaults(lab: Lab, tmp_path: Path) -> None:
    """Compose's usual case: `image:` and no `command:` (issue 14). site's image serves its own
    page (its Cmd, from its WorkingDir); probe's reaches site by name, at the address its Env gives."""
    lab.dy_ok("ps")
    c = Compose(lab, tmp_path, DEFAULTS_PROJECT)
    c.docker.import_image(
        "site:1",
        'CMD ["httpd", "-f", "-p", "80", "-h", "."]',
        "WORKDIR /www",
        tarball=_with_file(busybox_tarball(), "www/index.html", b"served by the image's own command\n"),
    )
    c.docker.import_image(
        "probe:1",
        "ENV TARGET=http://site/",
        'CMD ["sh", "-c", "while true; do wget -q -O- $TARGET || echo missed; sleep 1; done"]',
    )
    c.ok("up", "-d")
    info = lab.inspect("demo_site_1")
    assert info["Config"]["Cmd"] == ["httpd", "-f", "-p", "80", "-h", "."] and info["State"]["Running"]
    page = lab.in_ns(lab.up, "curl", "-sS", "--max-time", "10", f"http://{HOST_ADDR}:8081/")
    assert page.returncode == 0 and page.stdout == "served by the image's own command\n", page.stderr
    lab.eventually(
        lambda: "served by the image's own command" in c.ok("logs", "probe"),
        20,
        "probe reaching site by name",
    )
    c.ok("down")
    assert lab.dy_ok("ps", "-aq").split() == []
