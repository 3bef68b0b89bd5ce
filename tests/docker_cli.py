"""The docker CLI (and Compose) pointed at a lab's dockyardd: one wrapper for every test that uses them.

The environment is the caller's without its DOCKER_* and COMPOSE_* settings
(a developer's DOCKER_HOST or context must never reach a real daemon),
with DOCKER_HOST at the lab's socket and a DOCKER_CONFIG of the test's own
(logins and contexts stay in its directory).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

from images_lab import busybox_tarball
from lab import Lab

# The docker CLI 28 the suite installs (it negotiates API 1.41 by itself).
DOCKER = shutil.which("docker") or "/usr/bin/docker"


def docker_env(lab: Lab, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env["DOCKER_CONFIG"] = str(tmp / "docker-config")
    env["DOCKER_HOST"] = f"unix://{lab.root}/dockyard.sock"
    return env


class DockerCli:
    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.env = docker_env(lab, tmp)

    @classmethod
    def for_lab(cls, lab: Lab, tmp: Path, busybox: bool = False) -> DockerCli:
        """Once the lab's daemon is up; with `busybox`, busybox:latest imported (what tests run)."""
        lab.dy_ok("ps")
        cli = cls(lab, tmp)
        if busybox:
            cli.import_image("busybox:latest")
        return cli

    @property
    def socket_path(self) -> str:
        return self.env["DOCKER_HOST"].removeprefix("unix://")

    def run(
        self, *args: str, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [DOCKER, *args], capture_output=True, env=self.env, input=input, timeout=timeout
        )

    def ok(self, *args: str, input: bytes | None = None) -> str:
        """Its stdout, once it exited 0."""
        r = self.run(*args, input=input)
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr.decode())
        return r.stdout.decode()

    def fails(self, *args: str, message: str) -> str:
        """Its stderr, once it failed saying `message`."""
        r = self.run(*args)
        assert r.returncode != 0, (args, r.stdout)
        assert message in r.stderr.decode(), (args, r.stderr)
        return r.stderr.decode()

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [DOCKER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )

    def api(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """A raw Engine API call on the same socket (what the CLI does not expose): status, body."""
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.sock.connect(self.socket_path)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, f"/v1.41{path}", data, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        payload = answer.read()
        conn.close()
        return answer.status, payload

    def import_image(self, name: str, *changes: str, tarball: bytes | None = None) -> str:
        """`docker import` (busybox-static's tree unless told), with Dockerfile `changes`; its id."""
        args = [arg for change in changes for arg in ("-c", change)]
        return self.ok("import", *args, "-", name, input=tarball or busybox_tarball()).strip()
